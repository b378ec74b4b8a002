/* The two-minute C example: subscribe to a channel and print messages as they arrive.
 * Build against the installed SDK:  cc hello.c $(pkg-config --cflags --libs herald-client)
 * Run:  ./a.out 127.0.0.1 7600 "$(herald token -u alice --channels news)" news 3 */
#include <herald_client.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int remaining = 1;
static int failed = 0;

/* Runs on the SDK's loop thread. */
static void on_event(void* user, const herald_event* e) {
  (void)user;
  switch (e->type) {
    case HERALD_EVENT_SUBSCRIBED:
      printf("subscribed %.*s%s\n", (int)e->channel.len, e->channel.data,
             e->resumed && !e->recovered ? " (history lost: reload your state)" : "");
      break;
    case HERALD_EVENT_MESSAGE:
      printf("%.*s #%llu: %.*s\n", (int)e->channel.len, e->channel.data, (unsigned long long)e->offset,
             (int)e->payload.len, e->payload.data);
      pthread_mutex_lock(&mu);
      if (--remaining == 0) pthread_cond_signal(&cv);
      pthread_mutex_unlock(&mu);
      break; /* returning acks the message */
    case HERALD_EVENT_STATE:
      if (e->code != 0) {
        fprintf(stderr, "state %d: %.*s: %.*s\n", e->state, (int)e->error_name.len, e->error_name.data,
                (int)e->error_text.len, e->error_text.data);
      }
      if (e->state == HERALD_STATE_FAILED) {
        pthread_mutex_lock(&mu);
        failed = 1;
        pthread_cond_signal(&cv);
        pthread_mutex_unlock(&mu);
      }
      break;
    default:
      break;
  }
  fflush(stdout);
}

int main(int argc, char** argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s HOST PORT TOKEN CHANNEL COUNT\n", argv[0]);
    return 2;
  }
  remaining = atoi(argv[5]);
  herald_options* o = herald_options_new();
  herald_options_set_server(o, argv[1], (uint16_t)atoi(argv[2]));
  herald_options_set_token(o, argv[3]);
  char err[256];
  herald_client* c = herald_client_new(o, on_event, NULL, err, sizeof err);
  herald_options_free(o);
  if (c == NULL) {
    fprintf(stderr, "herald: %s\n", err);
    return 1;
  }
  herald_client_subscribe(c, argv[4]);
  herald_client_start(c);
  pthread_mutex_lock(&mu);
  while (remaining > 0 && !failed) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  herald_client_free(c); /* stops, stores positions, joins the loop thread */
  return failed ? 1 : 0;
}
