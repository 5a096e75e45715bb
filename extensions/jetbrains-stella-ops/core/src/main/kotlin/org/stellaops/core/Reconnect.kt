package org.stellaops.core

import java.time.Instant
import kotlin.math.min
import kotlin.math.pow

/**
 * How the event stream reconnects: the back-off between attempts and what each answer of GET /api/v1/events
 * means. Shared contract: `extensions/fixtures/events/reconnect.json`.
 */
data class ReconnectPolicy(
    /** First delay (the stream's `retry:` replaces it). */
    val initialMs: Long = 500,
    val maxMs: Long = 30_000,
    val factor: Double = 2.0,
    /** ± fraction of each delay, drawn at random. */
    val jitter: Double = 0.2,
    /** Longest `Retry-After` honoured. */
    val maxRetryAfterMs: Long = 300_000,
    /** Next try after a hub without the stream (404/405/501) or a refused credential (401/403). */
    val unsupportedRetryMs: Long = 300_000,
    /** A connection open this long (or that delivered a message) starts the attempt count again. */
    val stableAfterMs: Long = 60_000,
    /** A stream silent this long is treated as lost (the hub sends a comment every 15 s). */
    val idleTimeoutMs: Long = 45_000,
) {
    /** Delay before reconnection attempt [attempt] (1 = the first after a failure); [random] in [0, 1). */
    fun delay(attempt: Int, random: Double, retryMs: Long? = null): Long {
        val first = (retryMs ?: initialMs).toDouble()
        val base = min(maxMs.toDouble(), first * factor.pow(attempt.coerceIn(1, 61) - 1))
        return Math.round(base * (1 - jitter + 2 * jitter * random))
    }

    companion object {
        val DEFAULT = ReconnectPolicy()
    }
}

/** What to do with the answer to GET /api/v1/events. */
sealed class StreamAnswer {
    object Live : StreamAnswer()
    object Unsupported : StreamAnswer()
    object Unauthorized : StreamAnswer()
    /** The hub refused the position: forget it, read the list, reconnect at once. */
    object Restart : StreamAnswer()
    data class Retry(val retryAfterMs: Long? = null) : StreamAnswer()

    companion object {
        /** [resuming]: the request sent a Last-Event-ID. */
        fun of(status: Int, contentType: String?, resuming: Boolean, retryAfter: String?, policy: ReconnectPolicy = ReconnectPolicy.DEFAULT, now: Instant = Instant.now()): StreamAnswer = when {
            status == 200 -> if ((contentType ?: "").lowercase().startsWith("text/event-stream")) Live else Unsupported
            status == 404 || status == 405 || status == 501 -> Unsupported
            status == 401 || status == 403 -> Unauthorized
            status == 422 && resuming -> Restart
            else -> Retry(HttpTransport.retryAfter(retryAfter, now)?.toMillis()?.let { min(it, policy.maxRetryAfterMs) })
        }
    }
}
