/* Loads a .ssmq model through the installed ssmq C API, tokenizes a prompt,
 * generates greedily and prints the prompt ids followed by the generated ids
 * on one line, space separated.
 *   ssmq_greedy MODEL.ssmq PROMPT [N_NEW]                                */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ssmq.h>

static int fail(const char* what, ssmq_status st) {
  fprintf(stderr, "ssmq_greedy: %s: %s: %s\n", what, ssmq_status_name(st), ssmq_last_error());
  return 1;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s MODEL.ssmq PROMPT [N_NEW]\n", argv[0]);
    return 2;
  }
  const int n_new = argc > 3 ? atoi(argv[3]) : 32;
  ssmq_model* model = NULL;
  ssmq_status st = ssmq_model_open(argv[1], &model);
  if (st != SSMQ_OK) return fail("open", st);

  size_t n_prompt = 0;
  st = ssmq_tokenize(model, argv[2], strlen(argv[2]), NULL, 0, &n_prompt); /* ask for the size */
  if (st != SSMQ_OK && st != SSMQ_ERR_BUFFER_TOO_SMALL) return fail("tokenize", st);
  int32_t* ids = malloc((n_prompt + (size_t)n_new) * sizeof(int32_t));
  if (!ids) return 1;
  st = ssmq_tokenize(model, argv[2], strlen(argv[2]), ids, n_prompt, &n_prompt);
  if (st != SSMQ_OK || n_prompt == 0) return fail("tokenize", st);

  ssmq_context* ctx = NULL;
  st = ssmq_context_create(model, 0, &ctx);
  if (st != SSMQ_OK) return fail("context", st);
  size_t n = n_prompt;
  st = ssmq_context_feed(ctx, ids, n_prompt);
  for (int i = 0; st == SSMQ_OK && i < n_new; ++i) {
    int32_t next = 0;
    st = ssmq_context_greedy_token(ctx, &next);
    if (st != SSMQ_OK) break;
    ids[n++] = next;
    if (i + 1 < n_new) st = ssmq_context_feed(ctx, &next, 1);
  }
  if (st != SSMQ_OK) return fail("generate", st);
  for (size_t i = 0; i < n; ++i) printf(i ? " %d" : "%d", ids[i]);
  printf("\n");
  ssmq_context_free(ctx);
  ssmq_model_free(model);
  free(ids);
  return 0;
}
