"""The one cached Jinja2 Environment that renders every C template of lucid's codegen.

Template names: `program.c.j2` is lucid/codegen/templates/program.c.j2; `gemm/driver.c.j2` is
lucid/codegen/gemm/templates/driver.c.j2 (the GEMM subpackage keeps its templates beside it).
"""

from __future__ import annotations

import functools

import jinja2


@functools.cache
def env() -> jinja2.Environment:
    """Return the shared Environment: package loader, StrictUndefined, trim/lstrip blocks."""
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [
                jinja2.PackageLoader("lucid.codegen", "templates"),
                jinja2.PrefixLoader(
                    {"gemm": jinja2.PackageLoader("lucid.codegen.gemm", "templates")}
                ),
            ]
        ),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        # C text, not HTML: escaping would corrupt `<` and `&`.
        autoescape=False,
    )


def render(template: str, **context: object) -> str:
    """Render one template (named as in this module's docstring) with plain-data context."""
    return env().get_template(template).render(**context)
