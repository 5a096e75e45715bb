package org.stellaops.core

import java.time.Duration
import java.util.concurrent.CompletableFuture
import java.util.concurrent.ScheduledExecutorService
import java.util.concurrent.ScheduledFuture
import java.util.concurrent.TimeUnit

/** Delay policy: the normal interval after success, exponential backoff (capped) after failures, Retry-After honoured. */
data class Backoff(val interval: Duration, val initialBackoff: Duration = Duration.ofSeconds(2), val maxBackoff: Duration = Duration.ofMinutes(5)) {
    fun nextDelay(consecutiveFailures: Int, retryAfter: Duration? = null): Duration {
        if (consecutiveFailures <= 0) return interval
        val exp = initialBackoff.toMillis() * (1L shl minOf(consecutiveFailures - 1, 20))
        val backoff = Duration.ofMillis(minOf(exp, maxBackoff.toMillis()))
        return if (retryAfter != null && retryAfter > backoff) minOf(retryAfter, maxBackoff.multipliedBy(2)) else backoff
    }
}

/**
 * Runs [task] on an interval, never overlapping runs. Failures back off per [Backoff]; [onResult] sees each
 * outcome (null error = success) so the caller can switch between connected/offline without an error storm.
 */
class RefreshScheduler(
    private val executor: ScheduledExecutorService,
    private val backoff: Backoff,
    private val task: () -> CompletableFuture<*>,
    private val onResult: (Throwable?) -> Unit = {},
) {
    @Volatile var consecutiveFailures: Int = 0
        private set
    @Volatile private var next: ScheduledFuture<*>? = null
    @Volatile private var running = false
    @Volatile private var stopped = true
    @Volatile private var current: CompletableFuture<*>? = null

    fun start(initialDelay: Duration = Duration.ZERO) {
        stopped = false
        schedule(initialDelay)
    }

    /** Runs now (e.g. the Refresh action) unless a run is in progress; the interval restarts afterwards. */
    fun refreshNow() {
        if (stopped) return
        next?.cancel(false)
        schedule(Duration.ZERO)
    }

    fun stop() {
        stopped = true
        next?.cancel(false)
        current?.cancel(true)
    }

    private fun schedule(delay: Duration) {
        if (stopped) return
        next = executor.schedule({ run() }, delay.toMillis(), TimeUnit.MILLISECONDS)
    }

    private fun run() {
        synchronized(this) { if (running || stopped) return; running = true }
        val f = try { task() } catch (e: Throwable) { CompletableFuture.failedFuture<Any>(e) }
        current = f
        f.whenComplete { _, err ->
            val cause = err?.let(HttpTransport::unwrap)
            consecutiveFailures = if (cause == null) 0 else consecutiveFailures + 1
            try { onResult(cause) } catch (_: Throwable) {}
            synchronized(this) { running = false }
            schedule(backoff.nextDelay(consecutiveFailures, (cause as? ApiException)?.retryAfter))
        }
    }
}

/** Connection state shown by the status bar widget. */
enum class ConnectionState { SIGNED_OUT, CONNECTED, OFFLINE }

/**
 * Decides what the user is told: one notice when the backend becomes unreachable, one when it is back,
 * nothing while the state stays the same.
 */
class OfflineNotifier(private val notify: (String) -> Unit) {
    @Volatile var state: ConnectionState = ConnectionState.SIGNED_OUT
        private set

    fun update(newState: ConnectionState, detail: String? = null) {
        val old = state
        state = newState
        if (old == newState) return
        when {
            newState == ConnectionState.OFFLINE -> notify("Stella Ops is unreachable; showing last-known data${detail?.let { " ($it)" } ?: ""}.")
            newState == ConnectionState.CONNECTED && old == ConnectionState.OFFLINE -> notify("Stella Ops is reachable again.")
        }
    }
}

/** Status bar text, e.g. "Stella ✓ 12 ✗ 1", "Stella: offline", "Stella: sign in". */
fun statusText(state: ConnectionState, health: HealthSummary?): String = when (state) {
    ConnectionState.SIGNED_OUT -> "Stella: sign in"
    ConnectionState.OFFLINE -> "Stella: offline" + (health?.let { " (✓ ${it.healthy} ✗ ${it.failing})" } ?: "")
    ConnectionState.CONNECTED -> if (health == null) "Stella ✓" else "Stella ✓ ${health.healthy} ✗ ${health.failing}"
}
