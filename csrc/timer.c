/*
 * The timer wheel of an I/O loop (timer.h has the design). Pure: no clock, no I/O, no locks.
 */
#include "timer.h"

#include <string.h>

#define SLOT_MASK (HS_WHEEL_SLOTS - 1u)

const char *hs__timer_reason(int kind)
{
    /* HTTP.sys's HTTPERR reasons (reference 3.4). The certificate wait is HTTP.sys's
     * renegotiation timer; the CRL wait, lingering and the final flush are ours and unlogged. */
    switch (kind) {
    case HS_TIMER_CONNECTION_IDLE:
        return "Timer_ConnectionIdle";
    case HS_TIMER_HEADER_WAIT:
        return "Timer_HeaderWait";
    case HS_TIMER_ENTITY_BODY:
    case HS_TIMER_DRAIN_BODY:
        return "Timer_EntityBody";
    case HS_TIMER_MIN_SEND_RATE:
        return "Timer_MinBytesPerSecond";
    case HS_TIMER_REQUEST_QUEUE:
        return "Timer_ReqQueue";
    case HS_TIMER_CERT_WAIT:
        return "Timer_SslRenegotiation";
    default:
        return NULL;
    }
}

void hs__wheel_init(hs_wheel_t *w, uint64_t now_ms)
{
    memset(w, 0, sizeof(*w));
    w->tick = now_ms / HS_WHEEL_TICK_MS;
}

static void link_into(hs_timer_entry_t **head, hs_timer_entry_t *t)
{
    t->next = *head;
    if (t->next != NULL)
        t->next->pprev = &t->next;
    t->pprev = head;
    *head = t;
}

static void unlink_entry(hs_timer_entry_t *t)
{
    *t->pprev = t->next;
    if (t->next != NULL)
        t->next->pprev = t->pprev;
    t->next = NULL;
    t->pprev = NULL;
}

void hs__wheel_add(hs_wheel_t *w, hs_timer_entry_t *t, uint64_t due_ms, int kind)
{
    if (t->pprev != NULL)
        unlink_entry(t);
    else
        w->armed++;
    t->due_ms = due_ms;
    t->kind = kind;
    /* The first tick at or after due_ms, and never one already expired: expiring tick T
     * happens once now >= T * TICK >= due_ms. */
    uint64_t tick = (due_ms + HS_WHEEL_TICK_MS - 1) / HS_WHEEL_TICK_MS;
    if (tick <= w->tick)
        tick = w->tick + 1;
    link_into(&w->slots[tick & SLOT_MASK], t);
}

void hs__wheel_cancel(hs_wheel_t *w, hs_timer_entry_t *t)
{
    if (t->pprev == NULL)
        return;
    unlink_entry(t);
    w->armed--;
}

/* Moves the entries of one slot that are due to the batch; the others wait for a later turn. */
static void collect(hs_timer_entry_t **slot, uint64_t now_ms, hs_timer_entry_t **batch)
{
    for (hs_timer_entry_t *t = *slot, *next; t != NULL; t = next) {
        next = t->next;
        if (t->due_ms > now_ms)
            continue;
        unlink_entry(t);
        link_into(batch, t);
    }
}

size_t hs__wheel_expire(hs_wheel_t *w, uint64_t now_ms, hs_timer_fire_fn fire, void *arg)
{
    uint64_t target = now_ms / HS_WHEEL_TICK_MS;
    if (target <= w->tick)
        return 0;
    /* The batch is a list like a slot, so that fire() can cancel an entry still in it; its
     * entries count as armed until they fire. */
    hs_timer_entry_t *batch = NULL;
    uint64_t span = target - w->tick;
    if (span > HS_WHEEL_SLOTS)
        span = HS_WHEEL_SLOTS; /* the loop stalled for a whole turn: every slot once */
    if (w->armed > 0)
        for (uint64_t i = 1; i <= span; i++)
            collect(&w->slots[(w->tick + i) & SLOT_MASK], now_ms, &batch);
    w->tick = target;
    size_t fired = 0;
    for (hs_timer_entry_t *t = batch; t != NULL; t = batch) {
        unlink_entry(t);
        w->armed--;
        fired++;
        fire(t, arg);
    }
    return fired;
}

int hs__wheel_wait_ms(const hs_wheel_t *w, uint64_t now_ms, int max_ms)
{
    if (w->armed == 0)
        return max_ms;
    /* The first non-empty slot within max_ms: its tick is when something may be due (an entry
     * of a later turn there only makes the loop wake early once). */
    uint64_t ticks = (uint64_t)max_ms / HS_WHEEL_TICK_MS + 1;
    for (uint64_t i = 1; i <= ticks && i <= HS_WHEEL_SLOTS; i++) {
        uint64_t tick = w->tick + i;
        if (w->slots[tick & SLOT_MASK] == NULL)
            continue;
        uint64_t at = tick * HS_WHEEL_TICK_MS;
        if (at <= now_ms)
            return 0;
        return at - now_ms < (uint64_t)max_ms ? (int)(at - now_ms) : max_ms;
    }
    return max_ms;
}
