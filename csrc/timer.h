/*
 * The timers of HTTP.sys (reference 1.5, HTTP_TIMEOUT_LIMIT_INFO) and the wheel that runs them.
 *
 * One wheel per I/O loop, touched only by that loop's thread. Time is passed in (STYLE lesson
 * 10): nothing here reads a clock, so tests/c/test_timer.c drives it with made-up times.
 *
 * A hashed timing wheel (Varghese and Lauck): HS_WHEEL_SLOTS lists, one per tick of
 * HS_WHEEL_TICK_MS. An entry due at time t sits in the slot of the first tick at or after t; an
 * entry further away than one turn of the wheel sits in the same slot and is passed over (it
 * is compared with now) until its turn comes. Adding and cancelling are O(1) (a doubly linked
 * list through the entries themselves, no allocation); expiry visits only the slots of the ticks
 * that passed, and fires the entries that are due in one batch.
 */
#ifndef HS_TIMER_H
#define HS_TIMER_H

#include <stddef.h>
#include <stdint.h>

/* What a timer stands for. The first ones are HTTP.sys's; hs__timer_reason() gives the HTTPERR
 * reason phrase HTTP.sys logs when one of them expires. */
enum hs_timer {
    HS_TIMER_NONE = 0,
    HS_TIMER_CONNECTION_IDLE,  /* IdleConnection: keep-alive wait for the next request */
    HS_TIMER_HEADER_WAIT,      /* HeaderWait: a whole request head (and the handshake) */
    HS_TIMER_ENTITY_BODY,      /* EntityBody: gap between body bytes while the app reads */
    HS_TIMER_MIN_SEND_RATE,    /* MinSendRate: the client takes the response too slowly */
    HS_TIMER_REQUEST_QUEUE,    /* RequestQueue: a request waits for a worker too long */
    HS_TIMER_DRAIN_BODY,       /* DrainEntityBody: reading and dropping a body after the answer */
    HS_TIMER_CERT_WAIT,        /* a client certificate asked for after the handshake */
    HS_TIMER_CRL_WAIT,         /* a CRL being fetched for the client certificate's verdict */
    HS_TIMER_LINGER,           /* lingering close: the client's last bytes are read and dropped */
    HS_TIMER_CLOSING,          /* the last response is flushed before the close */
    HS_TIMER_KIND_COUNT
};

/* HTTP.sys's HTTPERR reason for an expiry of kind (Timer_ConnectionIdle, ...), or NULL for the
 * kinds HTTP.sys does not log. */
const char *hs__timer_reason(int kind);

#define HS_WHEEL_TICK_MS 50u
#define HS_WHEEL_SLOTS 1024u /* a power of two: 51.2 s per turn */

typedef struct hs_timer_entry {
    struct hs_timer_entry *next;
    struct hs_timer_entry **pprev; /* NULL while not armed */
    uint64_t due_ms;
    void *owner;
    int kind;
} hs_timer_entry_t;

typedef struct hs_wheel {
    uint64_t tick;                  /* the last tick whose slot was expired */
    size_t armed;                   /* entries in the wheel */
    hs_timer_entry_t *slots[HS_WHEEL_SLOTS];
} hs_wheel_t;

typedef void (*hs_timer_fire_fn)(hs_timer_entry_t *t, void *arg);

void hs__wheel_init(hs_wheel_t *w, uint64_t now_ms);

static inline int hs__timer_armed(const hs_timer_entry_t *t)
{
    return t->pprev != NULL;
}

/* Arms t to fire at due_ms (re-arms it if it was armed). A time already past fires at the next
 * expiry. */
void hs__wheel_add(hs_wheel_t *w, hs_timer_entry_t *t, uint64_t due_ms, int kind);
/* Disarms t; nothing if it is not armed. */
void hs__wheel_cancel(hs_wheel_t *w, hs_timer_entry_t *t);
/* Fires every entry due at or before now_ms, each disarmed before fire() sees it. fire() may
 * add and cancel entries, this one and others of the same batch included. Returns how many
 * fired. */
size_t hs__wheel_expire(hs_wheel_t *w, uint64_t now_ms, hs_timer_fire_fn fire, void *arg);
/* How long (ms) the loop may sleep before the next expiry might be due, at most max_ms. */
int hs__wheel_wait_ms(const hs_wheel_t *w, uint64_t now_ms, int max_ms);

#endif
