/*
 * Unit tests of csrc/timer.c: the wheel is driven with made-up times, so nothing sleeps.
 *
 * Checked: an entry fires at its due time and not a tick before; re-arming moves it; cancel is
 * final; entries more than one turn away wait for their turn; a stalled loop fires everything
 * due at once; fire() may cancel or re-arm entries of its own batch; the loop's sleep never
 * overshoots the next due entry; and a random schedule checked against a brute-force model.
 */
#include "../../csrc/timer.c"

#include <stdlib.h>

#include "tap.h"

#define N 64

static hs_timer_entry_t entries[N];
static int fired[N];
static uint64_t fired_at[N];
static uint64_t clock_now;

static int index_of(hs_timer_entry_t *t)
{
    return (int)(t - entries);
}

static void record(hs_timer_entry_t *t, void *arg)
{
    (void)arg;
    fired[index_of(t)]++;
    fired_at[index_of(t)] = clock_now;
}

static void reset(hs_wheel_t *w, uint64_t now)
{
    memset(entries, 0, sizeof(entries));
    memset(fired, 0, sizeof(fired));
    hs__wheel_init(w, now);
    clock_now = now;
}

/* Advances the clock to `to` in steps of `step` ms, expiring at each. */
static void run_until(hs_wheel_t *w, uint64_t to, uint64_t step, hs_timer_fire_fn fn)
{
    while (clock_now < to) {
        clock_now = clock_now + step < to ? clock_now + step : to;
        hs__wheel_expire(w, clock_now, fn, NULL);
    }
}

static void test_fires_on_time(hs_wheel_t *w)
{
    reset(w, 1000003);
    hs__wheel_add(w, &entries[0], clock_now + 1234, HS_TIMER_HEADER_WAIT);
    ok(hs__timer_armed(&entries[0]) && w->armed == 1, "armed after add");
    run_until(w, 1000003 + 1233, 1, record);
    ok(fired[0] == 0, "not fired 1 ms before it is due");
    run_until(w, 1000003 + 1234 + HS_WHEEL_TICK_MS, 1, record);
    ok(fired[0] == 1, "fired once");
    ok(fired_at[0] >= 1000003 + 1234 && fired_at[0] < 1000003 + 1234 + HS_WHEEL_TICK_MS,
       "within one tick of its due time (fired at +%llu)",
       (unsigned long long)(fired_at[0] - 1000003));
    ok(!hs__timer_armed(&entries[0]) && w->armed == 0, "disarmed when it fired");
    ok(entries[0].kind == HS_TIMER_HEADER_WAIT, "its kind kept");
}

static void test_rearm_and_cancel(hs_wheel_t *w)
{
    reset(w, 0);
    hs__wheel_add(w, &entries[0], 500, HS_TIMER_CONNECTION_IDLE);
    hs__wheel_add(w, &entries[0], 5000, HS_TIMER_ENTITY_BODY); /* moved, not duplicated */
    hs__wheel_add(w, &entries[1], 700, HS_TIMER_CONNECTION_IDLE);
    hs__wheel_cancel(w, &entries[1]);
    hs__wheel_cancel(w, &entries[1]); /* twice is harmless */
    ok(w->armed == 1, "one armed after re-arm and cancel (%zu)", w->armed);
    run_until(w, 4999, 7, record);
    ok(fired[0] == 0 && fired[1] == 0, "neither the old time nor the cancelled one fired");
    run_until(w, 5100, 7, record);
    ok(fired[0] == 1 && entries[0].kind == HS_TIMER_ENTITY_BODY, "fired at the new time, new kind");
}

static void test_past_and_far(hs_wheel_t *w)
{
    reset(w, 10000);
    hs__wheel_add(w, &entries[0], 9000, HS_TIMER_LINGER); /* already past */
    uint64_t far = 10000 + 3 * HS_WHEEL_SLOTS * HS_WHEEL_TICK_MS + 77; /* three turns away */
    hs__wheel_add(w, &entries[1], far, HS_TIMER_REQUEST_QUEUE);
    run_until(w, 10000 + HS_WHEEL_TICK_MS, HS_WHEEL_TICK_MS, record);
    ok(fired[0] == 1, "a time already past fires at the next tick");
    run_until(w, far - 1, 13, record);
    ok(fired[1] == 0, "an entry three turns away is passed over until its turn");
    run_until(w, far + HS_WHEEL_TICK_MS, 13, record);
    ok(fired[1] == 1 && fired_at[1] >= far, "and fires then");
}

static void test_stall(hs_wheel_t *w)
{
    reset(w, 0);
    for (int i = 0; i < N; i++)
        hs__wheel_add(w, &entries[i], (uint64_t)(i + 1) * 997, HS_TIMER_CONNECTION_IDLE);
    /* The loop stalls for longer than a whole turn: one expiry fires exactly the due ones. */
    clock_now = 40 * 997 + HS_WHEEL_TICK_MS; /* past the tick of the 40th */
    size_t n = hs__wheel_expire(w, clock_now, record, NULL);
    int ok_due = 1;
    for (int i = 0; i < N; i++)
        ok_due &= fired[i] == (i < 40);
    ok(n == 40 && ok_due, "after a stall the 40 due entries fire in one batch (%zu)", n);
    clock_now = 200000;
    n = hs__wheel_expire(w, clock_now, record, NULL);
    ok(n == N - 40 && w->armed == 0, "a stall beyond a whole turn fires the rest (%zu)", n);
}

/* Entries 0 and 1 each cancel the other and re-arm themselves, as a connection that closes in
 * a batch cancels its other timers. */
static hs_wheel_t *batch_wheel;
static void meddle(hs_timer_entry_t *t, void *arg)
{
    record(t, arg);
    int i = index_of(t);
    if (i == 0 || i == 1) {
        hs__wheel_cancel(batch_wheel, &entries[1 - i]);
        hs__wheel_add(batch_wheel, &entries[i], clock_now + 1000, HS_TIMER_HEADER_WAIT);
    }
    if (index_of(t) == 2)
        hs__wheel_add(batch_wheel, &entries[2], clock_now, HS_TIMER_HEADER_WAIT); /* now */
}

static void test_fire_may_change_the_batch(hs_wheel_t *w)
{
    reset(w, 0);
    batch_wheel = w;
    /* All in the same slot and due together. */
    hs__wheel_add(w, &entries[1], 100, HS_TIMER_CONNECTION_IDLE);
    hs__wheel_add(w, &entries[0], 100, HS_TIMER_CONNECTION_IDLE);
    hs__wheel_add(w, &entries[2], 100, HS_TIMER_CONNECTION_IDLE);
    clock_now = 100;
    hs__wheel_expire(w, clock_now, meddle, NULL);
    int first = fired[0] ? 0 : 1;
    ok(fired[0] + fired[1] == 1 && fired[2] == 1,
       "an entry cancelled by an earlier fire() of its batch does not fire");
    ok(w->armed == 2 && hs__timer_armed(&entries[first]) && !hs__timer_armed(&entries[1 - first]) &&
           hs__timer_armed(&entries[2]),
       "entries re-armed from fire() are armed (%zu)", w->armed);
    hs__wheel_expire(w, clock_now, meddle, NULL);
    ok(fired[2] == 1, "re-armed for now: not fired again in the same tick");
    clock_now += HS_WHEEL_TICK_MS;
    hs__wheel_expire(w, clock_now, meddle, NULL);
    ok(fired[2] == 2, "but at the next tick");
    hs__wheel_cancel(w, &entries[first]);
    hs__wheel_cancel(w, &entries[2]);
    ok(w->armed == 0, "nothing left armed");
}

static void test_wait(hs_wheel_t *w)
{
    reset(w, 100000);
    ok(hs__wheel_wait_ms(w, clock_now, 1000) == 1000, "empty wheel: the longest sleep");
    hs__wheel_add(w, &entries[0], clock_now + 333, HS_TIMER_HEADER_WAIT);
    int ms = hs__wheel_wait_ms(w, clock_now, 1000);
    ok(ms >= 333 && ms < 333 + (int)HS_WHEEL_TICK_MS, "sleeps until the entry's tick (%d)", ms);
    hs__wheel_add(w, &entries[0], clock_now + 5000, HS_TIMER_HEADER_WAIT);
    ok(hs__wheel_wait_ms(w, clock_now, 1000) == 1000, "an entry further away: the longest sleep");
    hs__wheel_add(w, &entries[0], clock_now - 5, HS_TIMER_HEADER_WAIT);
    ms = hs__wheel_wait_ms(w, clock_now + 100, 1000);
    ok(ms == 0, "a tick already passed: no sleep (%d)", ms);
    hs__wheel_cancel(w, &entries[0]);
}

/* Random adds, cancels and clock steps against a model that knows every entry's due time. */
static void test_random_against_model(hs_wheel_t *w)
{
    uint64_t due[N];
    int armed[N] = {0}, bad = 0;
    reset(w, 7);
    srand(12345);
    for (int step = 0; step < 200000; step++) {
        int i = rand() % N, op = rand() % 10;
        if (op < 4) {
            due[i] = clock_now + (uint64_t)(rand() % 130000);
            hs__wheel_add(w, &entries[i], due[i], HS_TIMER_ENTITY_BODY);
            armed[i] = 1;
        } else if (op < 5) {
            hs__wheel_cancel(w, &entries[i]);
            armed[i] = 0;
        } else {
            clock_now += (uint64_t)(rand() % 400);
            memset(fired, 0, sizeof(fired));
            hs__wheel_expire(w, clock_now, record, NULL);
            for (int k = 0; k < N; k++) {
                /* Fired: it was armed and due. Not fired: not armed, or not yet due (a due
                 * entry may wait for the end of its tick). */
                int should_by = armed[k] && due[k] + HS_WHEEL_TICK_MS <= clock_now;
                if ((fired[k] && (!armed[k] || due[k] > clock_now)) || (!fired[k] && should_by))
                    bad++;
                if (fired[k])
                    armed[k] = 0;
            }
        }
        size_t n_armed = 0;
        for (int k = 0; k < N; k++)
            n_armed += (size_t)armed[k];
        if (n_armed != w->armed)
            bad++;
    }
    ok(bad == 0, "200000 random operations agree with the model (%d disagreements)", bad);
}

static void test_reasons(void)
{
    ok(strcmp(hs__timer_reason(HS_TIMER_CONNECTION_IDLE), "Timer_ConnectionIdle") == 0 &&
           strcmp(hs__timer_reason(HS_TIMER_HEADER_WAIT), "Timer_HeaderWait") == 0 &&
           strcmp(hs__timer_reason(HS_TIMER_ENTITY_BODY), "Timer_EntityBody") == 0 &&
           strcmp(hs__timer_reason(HS_TIMER_MIN_SEND_RATE), "Timer_MinBytesPerSecond") == 0 &&
           strcmp(hs__timer_reason(HS_TIMER_REQUEST_QUEUE), "Timer_ReqQueue") == 0,
       "HTTP.sys's HTTPERR reasons");
    ok(hs__timer_reason(HS_TIMER_NONE) == NULL && hs__timer_reason(HS_TIMER_LINGER) == NULL &&
           hs__timer_reason(HS_TIMER_KIND_COUNT) == NULL,
       "none for the waits HTTP.sys does not log");
}

int main(void)
{
    static hs_wheel_t w;
    test_fires_on_time(&w);
    test_rearm_and_cancel(&w);
    test_past_and_far(&w);
    test_stall(&w);
    test_fire_may_change_the_batch(&w);
    test_wait(&w);
    test_random_against_model(&w);
    test_reasons();
    printf("1..%d\n", tally.run);
    return tally.failed ? 1 : 0;
}
