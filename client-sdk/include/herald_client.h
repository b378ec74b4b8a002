/* Herald client SDK, C ABI: the same library as herald/client.h behind opaque handles and
 * plain C types, for C, Swift, Kotlin/JNI, Python ctypes and other FFIs. No C++ type,
 * exception or libevent structure crosses this boundary (except the optional event_base
 * of herald_client_attach). */
#ifndef HERALD_CLIENT_H
#define HERALD_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#if defined(HERALD_CLIENT_BUILD)
#define HERALD_C_API __attribute__((visibility("default")))
#else
#define HERALD_C_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes: docs/protocol.md §9 (the same numbers as the server's Error codes), plus
 * the SDK's local 700s. Every function returning int returns 0 or one of these. */
#define HERALD_OK 0
#define HERALD_INVALID_FIELD 403          /* bad argument, or called from the wrong place */
#define HERALD_AUTH_FAILED 503
#define HERALD_TOKEN_EXPIRED 504
#define HERALD_PERMISSION_DENIED 505
#define HERALD_HEARTBEAT_TIMEOUT 507
#define HERALD_BAD_CHANNEL 508
#define HERALD_GOING_AWAY 603
#define HERALD_INTERNAL 604
#define HERALD_CONNECT_FAILED 700
#define HERALD_TLS_HANDSHAKE_FAILED 701
#define HERALD_CERTIFICATE_VERIFY_FAILED 702
#define HERALD_CONNECTION_LOST 703

/* Connection states (herald_event.state, herald_client_state). */
#define HERALD_STATE_STOPPED 0
#define HERALD_STATE_CONNECTING 1
#define HERALD_STATE_CONNECTED 2
#define HERALD_STATE_RECONNECTING 3
#define HERALD_STATE_FAILED 4

typedef struct herald_options herald_options;
typedef struct herald_client herald_client;
struct event_base;

/* A string view: `len` bytes at `data`, NOT NUL-terminated (print with "%.*s"). Valid
 * only during the callback that received it. */
typedef struct herald_str {
  const char* data;
  size_t len;
} herald_str;

typedef enum herald_event_type {
  HERALD_EVENT_STATE = 1,      /* state (+ code/error_name/error_text/temporary if an error caused it) */
  HERALD_EVENT_MESSAGE = 2,    /* a publication: channel, epoch, offset, message fields */
  HERALD_EVENT_SUBSCRIBED = 3, /* channel, epoch, offset, resumed, recovered */
  HERALD_EVENT_ERROR = 4,      /* an error that changes no state (e.g. a refused subscription: channel set) */
  HERALD_EVENT_DISMISS = 5,    /* channel, offset, message_id */
  HERALD_EVENT_PONG = 6        /* rtt_us */
} herald_event_type;

typedef struct herald_event {
  herald_event_type type;
  int state;
  int code; /* a status number; 0 = none */
  herald_str error_name, error_text;
  int temporary; /* the SDK retries by itself */
  herald_str channel, epoch, message_id, msg_type, content_type, collapse_key, payload;
  uint64_t offset;
  int priority; /* 0 (P0) .. 3 */
  int64_t created_at_ms;
  uint32_t ttl_s;
  int dismiss_on_read;
  /* HERALD_EVENT_SUBSCRIBED: resumed && !recovered means history was lost: missed
   * messages will not arrive, reload your state. */
  int resumed, recovered;
  uint64_t rtt_us;
} herald_event;

/* Called on the client's loop thread, one event at a time. It may call any herald_client_*
 * function except herald_client_stop and herald_client_free. */
typedef void (*herald_event_fn)(void* user, const herald_event* event);
/* Writes a fresh token (NUL-terminated) into buf (capacity cap); returns its length, or
 * 0 if none. Loop thread; keep it quick. */
typedef size_t (*herald_token_fn)(void* user, char* buf, size_t cap);
/* Position callbacks (loop thread). load: return 1 and fill epoch (NUL-terminated,
 * capacity cap) and *offset when known, else 0. */
typedef int (*herald_load_position_fn)(void* user, const char* channel, char* epoch, size_t cap, uint64_t* offset);
typedef void (*herald_store_position_fn)(void* user, const char* channel, const char* epoch, uint64_t offset);

/* ---- options: any thread; copied by herald_client_new ---- */
HERALD_C_API herald_options* herald_options_new(void); /* NULL only when out of memory */
HERALD_C_API void herald_options_free(herald_options* o);
/* Each setter returns 0, or HERALD_INVALID_FIELD for a NULL options pointer or bad value
 * (empty host, port 0, max message size 1..16383). Strings are copied; NULL means "". */
HERALD_C_API int herald_options_set_server(herald_options* o, const char* host, uint16_t port);
HERALD_C_API int herald_options_set_tls(herald_options* o, int enabled, const char* ca_file, const char* server_name);
HERALD_C_API int herald_options_set_verify_peer(herald_options* o, int verify);
HERALD_C_API int herald_options_set_bind_address(herald_options* o, const char* ip);
HERALD_C_API int herald_options_set_token(herald_options* o, const char* token);
HERALD_C_API int herald_options_set_token_provider(herald_options* o, herald_token_fn fn, void* user);
HERALD_C_API int herald_options_set_device_id(herald_options* o, const char* device_id);
HERALD_C_API int herald_options_set_client_name(herald_options* o, const char* name);
HERALD_C_API int herald_options_set_manual_ack(herald_options* o, int manual);
HERALD_C_API int herald_options_set_position_file(herald_options* o, const char* path);
HERALD_C_API int herald_options_set_position_callbacks(herald_options* o, herald_load_position_fn load,
                                                      herald_store_position_fn store, void* user);
HERALD_C_API int herald_options_set_reconnect(herald_options* o, uint32_t initial_ms, uint32_t max_ms);
HERALD_C_API int herald_options_set_timeouts(herald_options* o, uint32_t connect_timeout_ms, uint32_t heartbeat_ms,
                                            uint32_t heartbeat_timeout_ms);
HERALD_C_API int herald_options_set_wire(herald_options* o, int compression, int checksum, uint32_t max_message_size);

/* ---- client ---- */
/* A client with its own loop thread. NULL on invalid options (no host, no token and no
 * provider, unreadable CA or position file); the reason goes to err (capacity errlen,
 * may be NULL). Any thread. */
HERALD_C_API herald_client* herald_client_new(const herald_options* o, herald_event_fn on_event, void* user,
                                             char* err, size_t errlen);
/* A client on the application's libevent loop (events are delivered inside its
 * dispatch); call every function on that loop's thread. */
HERALD_C_API herald_client* herald_client_attach(struct event_base* base, const herald_options* o,
                                                herald_event_fn on_event, void* user, char* err, size_t errlen);
/* Stops and frees. Never from inside a callback. NULL is ignored. */
HERALD_C_API void herald_client_free(herald_client* c);
/* Connect and keep reconnecting. 0, or HERALD_INVALID_FIELD for NULL. Any thread. */
HERALD_C_API int herald_client_start(herald_client* c);
/* Close and stop reconnecting; joins the loop thread (own-thread mode). 0, or
 * HERALD_INVALID_FIELD when called from a callback or with NULL. */
HERALD_C_API int herald_client_stop(herald_client* c);
/* 0, HERALD_BAD_CHANNEL (invalid name) or HERALD_INVALID_FIELD (NULL). A refused
 * subscription arrives later as HERALD_EVENT_ERROR with the channel. Any thread. */
HERALD_C_API int herald_client_subscribe(herald_client* c, const char* channel);
HERALD_C_API int herald_client_unsubscribe(herald_client* c, const char* channel);
/* Manual acks: the app processed (channel, epoch, offset). 0 or HERALD_INVALID_FIELD. */
HERALD_C_API int herald_client_ack(herald_client* c, const char* channel, const char* epoch, uint64_t offset);
/* A Ping; HERALD_EVENT_PONG reports the round trip. 0 or HERALD_CONNECTION_LOST. */
HERALD_C_API int herald_client_ping(herald_client* c);
/* HERALD_STATE_*. Any thread. */
HERALD_C_API int herald_client_state(const herald_client* c);

/* "kAuthFailed", and a one-line description; static strings, never NULL. */
HERALD_C_API const char* herald_status_name(int code);
HERALD_C_API const char* herald_status_text(int code);
HERALD_C_API const char* herald_version(void);

#ifdef __cplusplus
}
#endif

#endif /* HERALD_CLIENT_H */
