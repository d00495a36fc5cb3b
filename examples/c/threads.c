/* Two sessions of one model generating on two threads at once, and a third thread that
 * cancels one of them: checks the C API's threading rules.
 *
 *   threads MODEL.gguf
 *
 * Round 1: threads A and B continue the same prompt greedily, each in its own session; their
 * texts must be equal and non-empty. Round 2 (after ei_session_reset): the same, while a
 * third thread cancels B once B has streamed its first piece (B's callback waits until the
 * cancel was sent, so the outcome does not depend on timing): A must give round 1's text
 * again, B must return EI_ERR_CANCELLED with a prefix of it. Exits 0 when all checks pass. */
#define _POSIX_C_SOURCE 200112L
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "edgeinfer.h"

#define PROMPT "The three primary colours are"
#define MAX_TOKENS 48
#define TEXT_CAP 16384

typedef struct {
    EiSession *session;
    char text[TEXT_CAP];
    size_t len;
    int rc;
    uint32_t n;
    char error[512];
    /* cancel handshake (round 2, session B only) */
    int handshake;
    int started, cancel_sent;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} Job;

static int on_piece(const char *piece, void *user_data) {
    Job *j = user_data;
    size_t n = strlen(piece);
    if (j->len + n >= TEXT_CAP) {
        return 1;
    }
    memcpy(j->text + j->len, piece, n + 1);
    j->len += n;
    if (j->handshake) {
        pthread_mutex_lock(&j->mu);
        j->started = 1;
        pthread_cond_broadcast(&j->cv);
        while (!j->cancel_sent) {
            pthread_cond_wait(&j->cv, &j->mu);
        }
        j->handshake = 0;
        pthread_mutex_unlock(&j->mu);
    }
    return 0;
}

static void *run(void *arg) {
    Job *j = arg;
    EiGenerateParams gp = ei_generate_params_default();
    gp.temperature = 0.0f;
    gp.max_tokens = MAX_TOKENS;
    j->len = 0;
    j->text[0] = '\0';
    j->rc = ei_generate(j->session, PROMPT, gp, on_piece, j, &j->n);
    snprintf(j->error, sizeof j->error, "%s", ei_last_error()); /* per thread */
    return NULL;
}

static void *canceller(void *arg) {
    Job *j = arg;
    pthread_mutex_lock(&j->mu);
    while (!j->started) {
        pthread_cond_wait(&j->cv, &j->mu);
    }
    if (ei_session_cancel(j->session) != EI_OK) {
        fprintf(stderr, "ei_session_cancel: %s\n", ei_last_error());
    }
    j->cancel_sent = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

static int check(int ok, const char *what) {
    fprintf(stderr, "%s: %s\n", ok ? "ok  " : "FAIL", what);
    return ok ? 0 : 1;
}

static Job a, b;

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf\n", argv[0]);
        return 2;
    }
    EiModelParams mp = ei_model_params_default();
    mp.n_threads = 2;
    EiModel *model = NULL;
    if (ei_model_load(argv[1], mp, &model) != EI_OK) {
        fprintf(stderr, "loading the model: %s\n", ei_last_error());
        return 1;
    }
    EiSessionParams sp = ei_session_params_default();
    sp.n_ctx = 256;
    if (ei_session_new(model, sp, &a.session) != EI_OK ||
        ei_session_new(model, sp, &b.session) != EI_OK) {
        fprintf(stderr, "creating the sessions: %s\n", ei_last_error());
        return 1;
    }
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    int failures = 0;
    pthread_t ta, tb, tc;

    /* Round 1: both run to the end. */
    pthread_create(&ta, NULL, run, &a);
    pthread_create(&tb, NULL, run, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    failures += check(a.rc == EI_OK && b.rc == EI_OK, "round 1: both generations succeed");
    failures += check(a.len > 0 && a.n > 0, "round 1: A generated text");
    failures += check(strcmp(a.text, b.text) == 0, "round 1: A and B give the same greedy text");
    printf("A: %s%s\nB: %s%s\n", PROMPT, a.text, PROMPT, b.text);
    static char round1[TEXT_CAP];
    memcpy(round1, a.text, TEXT_CAP);

    /* Round 2: a third thread cancels B. */
    if (ei_session_reset(a.session) != EI_OK || ei_session_reset(b.session) != EI_OK) {
        fprintf(stderr, "reset: %s\n", ei_last_error());
        return 1;
    }
    b.handshake = 1;
    pthread_create(&tc, NULL, canceller, &b);
    pthread_create(&ta, NULL, run, &a);
    pthread_create(&tb, NULL, run, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_join(tc, NULL);
    failures += check(a.rc == EI_OK && strcmp(a.text, round1) == 0,
                      "round 2: A is not disturbed by B's cancel");
    failures += check(b.rc == EI_ERR_CANCELLED, "round 2: B returns EI_ERR_CANCELLED");
    failures += check(strstr(b.error, "cancel") != NULL, "round 2: B's ei_last_error says so");
    failures += check(b.n >= 1 && b.n < MAX_TOKENS && b.len > 0 &&
                          strncmp(b.text, round1, b.len) == 0,
                      "round 2: B stopped early with a prefix of the full text");
    printf("B (cancelled after %u tokens): %s%s\n", b.n, PROMPT, b.text);

    ei_session_free(a.session);
    ei_session_free(b.session);
    ei_model_free(model);
    return failures == 0 ? 0 : 1;
}
