"""The one cached Jinja2 Environment that renders every C template of lucid's codegen."""

from __future__ import annotations

import functools

import jinja2


@functools.cache
def env() -> jinja2.Environment:
    """Return the shared Environment: package loader, StrictUndefined, trim/lstrip blocks."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("lucid.codegen", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # C text, not HTML: escaping would corrupt `<` and `&`.
        autoescape=False,
    )


def render(template: str, **context: object) -> str:
    """Render one template of lucid/codegen/templates with plain-data context."""
    return env().get_template(template).render(**context)
