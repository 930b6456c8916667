/* A C program that uses an exported lucid model with no Python involved: tests/aot drives it.
 *
 * Build: cc -DMODEL=<name> -DHEADER='"<stem>.h"' c_caller.c <stem>.so -lpthread
 * Usage: c_caller INPUTS.bin [--weights PATH] [--bad-weights PATH]... [--threads] BATCH...
 *
 * INPUTS.bin holds, for each BATCH in order, each input's raw data (declared dtype, C order).
 * Prints the description ("input I NAME DTYPE d0,d1"), then per batch "rc BATCH CODE" and the
 * outputs ("out BATCH J v v v ...", floats as C99 hex so nothing is lost in printing). Then
 * checks every error code, and with --threads runs the first batch from two threads at once and compares both with the single-threaded result. Exit 0 iff all checks pass.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include HEADER

#define CAT2(a, b) a##b
#define CAT(a, b) CAT2(a, b)
#define API(suffix) CAT(MODEL, suffix)

static int failures = 0;
#define CHECK(cond, ...)                                                                     \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            printf("FAIL line %d: ", __LINE__);                                              \
            printf(__VA_ARGS__);                                                             \
            printf("\n");                                                                    \
            ++failures;                                                                      \
        }                                                                                    \
    } while (0)

static size_t dtype_size(int dtype)
{
    return dtype == API(_F32) ? 4 : dtype == API(_BOOL) ? 1 : 8;
}

/* bytes of input/output i at `batch` */
static size_t nbytes(int input, int i, int64_t batch)
{
    int rank = input ? API(_input_rank)(i) : API(_output_rank)(i);
    const int64_t *shape = input ? API(_input_shape)(i) : API(_output_shape)(i);
    size_t n = dtype_size(input ? API(_input_dtype)(i) : API(_output_dtype)(i));
    for (int k = 0; k < rank; ++k)
        n *= (size_t)(shape[k] < 0 ? -shape[k] * batch : shape[k]); /* -k: k times the batch */
    return n;
}

static void **alloc_all(int input, int64_t batch)
{
    int n = input ? API(_num_inputs)() : API(_num_outputs)();
    void **p = calloc((size_t)n + 1, sizeof *p);
    for (int i = 0; i < n; ++i)
        p[i] = calloc(1, nbytes(input, i, batch) + 1);
    return p;
}

static void free_all(int input, void **p)
{
    int n = input ? API(_num_inputs)() : API(_num_outputs)();
    for (int i = 0; i < n; ++i)
        free(p[i]);
    free(p);
}

static void print_outputs(int64_t batch, void **outs)
{
    for (int j = 0; j < API(_num_outputs)(); ++j) {
        int dt = API(_output_dtype)(j);
        size_t n = nbytes(0, j, batch) / dtype_size(dt);
        printf("out %lld %d", (long long)batch, j);
        for (size_t e = 0; e < n; ++e) {
            if (dt == API(_F32))
                printf(" %a", (double)((float *)outs[j])[e]);
            else if (dt == API(_F64))
                printf(" %a", ((double *)outs[j])[e]);
            else if (dt == API(_I64))
                printf(" %lld", (long long)((int64_t *)outs[j])[e]);
            else
                printf(" %d", ((unsigned char *)outs[j])[e]);
        }
        printf("\n");
    }
}

struct job {
    const API(_model) * model;
    void **ins, **outs;
    int64_t batch;
    int nthreads;
    int rc;
};

static void *run_job(void *arg)
{
    struct job *j = arg;
    for (int rep = 0; rep < 20 && j->rc == 0; ++rep)
        j->rc = API(_model_run_threads)(j->model, (const void *const *)j->ins, j->outs, j->batch,
                                        j->nthreads);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s INPUTS.bin [--weights P] [--bad-weights P]... [--threads] BATCH...\n", argv[0]);
        return 2;
    }
    FILE *data = fopen(argv[1], "rb");
    CHECK(data != NULL, "cannot open %s", argv[1]);
    if (data == NULL)
        return 1;
    const char *weights = NULL;
    int threads = 0;
    int nb = 0;
    int64_t batches[64];
    for (int a = 2; a < argc; ++a) {
        if (strcmp(argv[a], "--weights") == 0 && a + 1 < argc) {
            weights = argv[++a];
        } else if (strcmp(argv[a], "--bad-weights") == 0 && a + 1 < argc) {
            int err = -1;
            API(_model) *bad = API(_open)(argv[++a], &err);
            CHECK(bad == NULL && err == API(_E_WEIGHTS), "bad weights %s: err %d", argv[a], err);
            printf("bad-weights %s -> %s\n", argv[a], API(_strerror)(err));
        } else if (strcmp(argv[a], "--threads") == 0) {
            threads = 1;
        } else if (nb < 64) {
            batches[nb++] = atoll(argv[a]);
        }
    }

    printf("abi %d lucid %s embedded %d\n", API(_abi_version)(), API(_lucid_version)(),
           API(_has_embedded_weights)());
    for (int role = 1; role >= 0; --role) {
        int n = role ? API(_num_inputs)() : API(_num_outputs)();
        for (int i = 0; i < n; ++i) {
            int rank = role ? API(_input_rank)(i) : API(_output_rank)(i);
            const int64_t *shape = role ? API(_input_shape)(i) : API(_output_shape)(i);
            printf("%s %d %s %d ", role ? "input" : "output", i,
                   role ? API(_input_name)(i) : API(_output_name)(i),
                   role ? API(_input_dtype)(i) : API(_output_dtype)(i));
            for (int k = 0; k < rank; ++k)
                printf(k ? ",%lld" : "%lld", (long long)shape[k]);
            printf("\n");
        }
    }
    CHECK(API(_input_name)(-1) == NULL && API(_input_shape)(API(_num_inputs)()) == NULL
              && API(_output_rank)(99) == -1 && API(_output_dtype)(-5) == -1,
          "out-of-range description queries");

    int err = -1;
    API(_model) *model = API(_open)(weights, &err);
    CHECK(model != NULL && err == 0, "open(%s): %s", weights ? weights : "NULL", API(_strerror)(err));
    if (model == NULL)
        return 1;

    void **first_ins = NULL, **first_outs = NULL;
    for (int b = 0; b < nb; ++b) {
        void **ins = alloc_all(1, batches[b]), **outs = alloc_all(0, batches[b]);
        for (int i = 0; i < API(_num_inputs)(); ++i) {
            size_t n = nbytes(1, i, batches[b]);
            CHECK(fread(ins[i], 1, n, data) == n, "short input file");
        }
        int rc = API(_model_run)(model, (const void *const *)ins, outs, batches[b]);
        printf("rc %lld %d %s\n", (long long)batches[b], rc, API(_strerror)(rc));
        if (rc == 0)
            print_outputs(batches[b], outs);
#ifdef HAS_RUN
        /* the handle-free entry gives the same bytes */
        void **again = alloc_all(0, batches[b]);
        int rc2 = API(_run)((const void *const *)ins, again, batches[b]);
        CHECK(rc2 == rc, "NAME_run rc %d vs %d", rc2, rc);
        for (int j = 0; rc == 0 && j < API(_num_outputs)(); ++j)
            CHECK(memcmp(outs[j], again[j], nbytes(0, j, batches[b])) == 0, "NAME_run output %d", j);
        free_all(0, again);
#endif
        if (b == 0) {
            first_ins = ins;
            first_outs = outs;
        } else {
            free_all(1, ins);
            free_all(0, outs);
        }
    }

    if (threads && first_ins != NULL) {
        int64_t thread_batch = batches[0];
        /* two threads at once on one handle (one of them also multi-threaded inside) */
        struct job jobs[2];
        pthread_t tids[2];
        for (int t = 0; t < 2; ++t) {
            jobs[t] = (struct job){model, first_ins, alloc_all(0, thread_batch), thread_batch, t + 1, 0};
            pthread_create(&tids[t], NULL, run_job, &jobs[t]);
        }
        for (int t = 0; t < 2; ++t)
            pthread_join(tids[t], NULL);
        for (int t = 0; t < 2; ++t) {
            CHECK(jobs[t].rc == 0, "thread %d rc %d", t, jobs[t].rc);
            for (int j = 0; j < API(_num_outputs)(); ++j)
                CHECK(memcmp(jobs[t].outs[j], first_outs[j], nbytes(0, j, thread_batch)) == 0,
                      "thread %d output %d differs from the single-threaded run", t, j);
            free_all(0, jobs[t].outs);
        }
        printf("threads ok\n");
    }

    /* every error code the API promises */
    if (first_ins != NULL) {
        const void *const *ins = (const void *const *)first_ins;
        int64_t b0 = batches[0];
        CHECK(API(_model_run)(model, NULL, first_outs, b0) == API(_E_NULL), "NULL inputs");
        CHECK(API(_model_run)(model, ins, NULL, b0) == API(_E_NULL), "NULL outputs");
        CHECK(API(_model_run)(NULL, ins, first_outs, b0) == API(_E_HANDLE), "NULL model");
        CHECK(strstr(API(_strerror)(API(_E_HANDLE)), "handle is NULL") != NULL, "E_HANDLE message");
        void *saved = first_outs[0];
        first_outs[0] = NULL;
        CHECK(API(_model_run)(model, ins, first_outs, b0) == API(_E_NULL), "NULL output 0");
        first_outs[0] = saved;
        if (API(_num_inputs)() > 0) {
            void *in0 = first_ins[0];
            first_ins[0] = NULL;
            CHECK(API(_model_run)(model, ins, first_outs, b0) == API(_E_NULL), "NULL input 0");
            first_ins[0] = in0;
        }
        CHECK(API(_model_run)(model, ins, first_outs, 0) == API(_E_BATCH), "batch 0");
        CHECK(API(_model_run)(model, ins, first_outs, -3) == API(_E_BATCH), "batch -3");
        CHECK(API(_model_run_threads)(model, ins, first_outs, b0, -1) == API(_E_ARG), "nthreads -1");
        CHECK(API(_model_run_threads)(model, ins, first_outs, b0, 0) == 0, "nthreads 0 (all cores)");
#ifdef HAS_RUN
        CHECK(API(_run)(NULL, first_outs, b0) == API(_E_NULL), "NAME_run NULL inputs");
        CHECK(API(_run)(ins, first_outs, 0) == API(_E_BATCH), "NAME_run batch 0");
#endif
        free_all(1, first_ins);
        free_all(0, first_outs);
    }
    err = -1;
    CHECK(API(_open)("/nonexistent/lucid.weights", &err) == NULL && err == API(_E_IO), "missing file");
    CHECK(strcmp(API(_strerror)(0), "ok") == 0, "strerror(0)");
    CHECK(API(_strerror)(12345) != NULL && API(_strerror)(-1) != NULL, "strerror(unknown)");
    CHECK(API(_strerror)(API(_E_WEIGHTS)) != NULL, "strerror(E_WEIGHTS)");
    printf("codes NULL=%d BATCH=%d INDEX=%d WEIGHTS=%d\n", API(_E_NULL), API(_E_BATCH),
           API(_E_INDEX), API(_E_WEIGHTS));
    API(_close)(model);
    API(_close)(NULL);
    fclose(data);
    printf(failures ? "FAILED %d\n" : "all checks passed\n", failures);
    return failures != 0;
}
