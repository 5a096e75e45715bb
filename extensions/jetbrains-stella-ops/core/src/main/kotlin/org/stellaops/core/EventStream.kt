package org.stellaops.core

import java.net.URI
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.nio.ByteBuffer
import java.time.Clock
import java.time.Duration
import java.time.Instant
import java.util.concurrent.CompletableFuture
import java.util.concurrent.CompletionStage
import java.util.concurrent.Flow
import java.util.concurrent.ScheduledExecutorService
import java.util.concurrent.ScheduledFuture
import java.util.concurrent.ThreadLocalRandom
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicReference

/** Where the event stream stands. */
sealed class StreamStatus {
    object Stopped : StreamStatus() { override fun toString() = "Stopped" }
    data class Connecting(val attempt: Int) : StreamStatus()
    data class Live(val since: Instant, val resumedFrom: String?) : StreamStatus()
    data class Retrying(val attempt: Int, val inMs: Long, val error: String) : StreamStatus()
    /** The hub has no event stream (404/405/501, or not `text/event-stream`). */
    data class Unsupported(val error: String, val inMs: Long) : StreamStatus()
    /** The credential was refused (401/403). */
    data class Unauthorized(val error: String, val inMs: Long) : StreamStatus()
}

/**
 * The hub's event stream (GET /api/v1/events): one long-lived request read as it arrives (a non-blocking body
 * subscriber: no thread waits on it), resumed with Last-Event-ID after any drop, reconnected with back-off
 * ([ReconnectPolicy], the shared `reconnect.json`), treated as lost when silent past the idle timeout.
 * Callbacks run on the HTTP client's threads or [executor], never on a UI thread.
 */
class EventStreamClient(
    private val baseUrl: URI,
    private val http: HttpTransport,
    private val bearer: BearerProvider,
    private val executor: ScheduledExecutorService,
    /** The position to resume from (sent as Last-Event-ID). */
    private val lastEventId: () -> String?,
    /** Messages completed by one read, in order. */
    private val onMessages: (List<SseMessage>) -> Unit,
    /** The stream is open; `resuming` when a Last-Event-ID was sent. */
    private val onOpen: (resuming: Boolean) -> Unit = {},
    /** The hub refused the position (422): forget it; the client reconnects at once without it. */
    private val onForgetPosition: () -> Unit = {},
    private val onStatus: (StreamStatus) -> Unit = {},
    private val policy: ReconnectPolicy = ReconnectPolicy.DEFAULT,
    /** Until the response headers. */
    private val connectTimeout: Duration = Duration.ofSeconds(10),
    private val random: () -> Double = { ThreadLocalRandom.current().nextDouble() },
    private val log: (String) -> Unit = {},
    private val clock: Clock = Clock.systemUTC(),
) {
    private sealed class Outcome {
        object Stopped : Outcome()
        data class Ended(val stable: Boolean, val error: String) : Outcome()
        data class Failed(val error: String) : Outcome()
        data class Unsupported(val error: String) : Outcome()
        data class Unauthorized(val error: String) : Outcome()
        data class Restart(val error: String) : Outcome()
        data class Retry(val error: String, val retryAfterMs: Long?) : Outcome()
    }

    @Volatile var status: StreamStatus = StreamStatus.Stopped
        private set
    val isLive: Boolean get() = status is StreamStatus.Live

    private val lock = Any()
    @Volatile private var gen = 0
    @Volatile private var running = false
    private var failures = 0
    @Volatile private var retryMs: Long? = null
    private var pending: ScheduledFuture<*>? = null
    private var conn: Connection? = null

    /** Starts (or restarts, attempts counted afresh) the connection loop. */
    fun start() {
        val g = synchronized(lock) {
            running = true
            failures = 0
            pending?.cancel(false)
            conn?.close()
            conn = null
            ++gen
        }
        attempt(g)
    }

    /** Skips the current wait (e.g. the hub answered a poll again); a live or connecting stream is kept. */
    fun reconnectNow() {
        if (!running) return
        val s = status
        if (s is StreamStatus.Live || s is StreamStatus.Connecting) return
        start()
    }

    fun stop() {
        synchronized(lock) {
            running = false
            gen++
            pending?.cancel(false)
            conn?.close()
            conn = null
        }
        status = StreamStatus.Stopped
        runCatching { onStatus(StreamStatus.Stopped) }
    }

    private fun setStatus(g: Int, s: StreamStatus) {
        if (g != gen) return
        status = s
        try { onStatus(s) } catch (e: Throwable) { log("event stream: status listener failed: $e") }
    }

    private fun attempt(g: Int) {
        if (g != gen) return
        setStatus(g, StreamStatus.Connecting(synchronized(lock) { failures } + 1))
        connect(g).whenComplete { out, err -> after(g, out ?: Outcome.Failed(err?.let { HttpTransport.unwrap(it).toString() } ?: "failed")) }
    }

    private fun after(g: Int, out: Outcome) {
        if (out is Outcome.Stopped) return
        var next: StreamStatus? = null
        var message = ""
        synchronized(lock) {
            if (g != gen) return
            val delay: Long
            when (out) {
                is Outcome.Ended -> {
                    if (out.stable) failures = 0
                    failures++
                    delay = policy.delay(failures, random(), retryMs)
                    next = StreamStatus.Retrying(failures, delay, out.error)
                    message = out.error
                }
                is Outcome.Failed -> {
                    failures++
                    delay = policy.delay(failures, random(), retryMs)
                    next = StreamStatus.Retrying(failures, delay, out.error)
                    message = out.error
                }
                is Outcome.Unsupported -> {
                    failures = 0
                    delay = policy.unsupportedRetryMs
                    next = StreamStatus.Unsupported(out.error, delay)
                    message = out.error
                }
                is Outcome.Unauthorized -> {
                    failures = 0
                    delay = policy.unsupportedRetryMs
                    next = StreamStatus.Unauthorized(out.error, delay)
                    message = out.error
                }
                is Outcome.Restart -> {
                    failures = 0
                    delay = 0
                    message = out.error
                }
                is Outcome.Retry -> {
                    failures++
                    delay = out.retryAfterMs ?: policy.delay(failures, random(), retryMs)
                    next = StreamStatus.Retrying(failures, delay, out.error)
                    message = out.error
                }
                Outcome.Stopped -> return
            }
            if (out is Outcome.Restart) {
                log("event stream: $message; starting again without a position")
                try { onForgetPosition() } catch (e: Throwable) { log("event stream: $e") }
            } else log("event stream: $message; next attempt in $delay ms")
            pending = executor.schedule({ attempt(g) }, delay, TimeUnit.MILLISECONDS)
        }
        next?.let { setStatus(g, it) }
    }

    /** One connection: the body subscriber of a live stream. Its body future completes at once, so the response arrives with the headers. */
    private inner class Connection(val g: Int, position: String?) : HttpResponse.BodySubscriber<String?> {
        val done = CompletableFuture<Outcome>()
        @Volatile var exchange: CompletableFuture<*>? = null
        @Volatile var why: String? = null
        @Volatile private var subscription: Flow.Subscription? = null
        @Volatile private var closed = false
        @Volatile private var delivered = false
        @Volatile private var since: Instant? = null
        @Volatile private var idle: ScheduledFuture<*>? = null
        private val parser = SseParser(position)
        private val utf8 = Utf8Stream()

        fun opened() {
            since = clock.instant()
            armIdle()
        }

        private fun armIdle() {
            idle?.cancel(false)
            if (!closed) idle = executor.schedule({ abort("no data for ${policy.idleTimeoutMs} ms") }, policy.idleTimeoutMs, TimeUnit.MILLISECONDS)
        }

        fun abort(reason: String) {
            why = reason
            subscription?.cancel()
            exchange?.cancel(true)
            finish(reason)
        }

        /** Stopped from outside: no outcome to act on. */
        fun close() {
            closed = true
            idle?.cancel(false)
            subscription?.cancel()
            exchange?.cancel(true)
            done.complete(Outcome.Stopped)
        }

        private fun finish(error: String) {
            closed = true
            idle?.cancel(false)
            val up = since?.let { Duration.between(it, clock.instant()).toMillis() } ?: 0
            done.complete(Outcome.Ended(delivered || up >= policy.stableAfterMs, why ?: error))
        }

        override fun getBody(): CompletionStage<String?> = CompletableFuture.completedFuture(null)

        override fun onSubscribe(s: Flow.Subscription) {
            subscription = s
            if (closed) s.cancel() else s.request(1)
        }

        override fun onNext(items: List<ByteBuffer>) {
            if (closed) return
            armIdle()
            val text = StringBuilder()
            for (b in items) text.append(utf8.decode(b))
            val messages = parser.push(text.toString())
            parser.retryMs?.let { retryMs = it }
            if (messages.isNotEmpty() && g == gen) {
                delivered = true
                try { onMessages(messages) } catch (e: Throwable) { log("event stream: handling messages failed: $e") }
            }
            subscription?.request(1)
        }

        override fun onError(t: Throwable) = finish("connection lost (${HttpTransport.unwrap(t).let { it.javaClass.simpleName + (it.message?.let { m -> ": $m" } ?: "") }})")

        override fun onComplete() = finish("the hub closed the stream")
    }

    private fun connect(g: Int): CompletableFuture<Outcome> {
        val result = CompletableFuture<Outcome>()
        bearer.bearer(null).whenComplete { token, terr ->
            if (terr != null) {
                result.complete(Outcome.Failed("no credential for the event stream: ${HttpTransport.unwrap(terr).message}"))
                return@whenComplete
            }
            val position = lastEventId()
            val c = Connection(g, position)
            val current = synchronized(lock) { if (g == gen) { conn = c; true } else false }
            if (!current) {
                result.complete(Outcome.Stopped)
                return@whenComplete
            }
            val b = HttpRequest.newBuilder(baseUrl.resolvePath("/api/v1/events")).GET()
                .header("Accept", "text/event-stream")
                .header("Cache-Control", "no-cache")
                .header("User-Agent", http.userAgent)
                .header("Authorization", "Bearer $token")
            if (position != null) b.header("Last-Event-ID", position)
            val answer = AtomicReference<StreamAnswer?>()
            val handler = HttpResponse.BodyHandler<String?> { info ->
                val a = StreamAnswer.of(
                    info.statusCode(), info.headers().firstValue("content-type").orElse(null), position != null,
                    info.headers().firstValue("retry-after").orElse(null), policy, clock.instant(),
                )
                answer.set(a)
                if (a == StreamAnswer.Live && g == gen) {
                    // Before the first byte of the body: the stream is open.
                    c.opened()
                    setStatus(g, StreamStatus.Live(clock.instant(), position))
                    log("event stream open${position?.let { ", resuming after $it" } ?: ""}")
                    try { onOpen(position != null) } catch (e: Throwable) { log("event stream: onOpen failed: $e") }
                    c
                } else HttpResponse.BodySubscribers.mapping(HttpResponse.BodySubscribers.ofString(Charsets.UTF_8)) { it as String? }
            }
            val timer = executor.schedule({
                c.why = "no answer within ${connectTimeout.toMillis()} ms"
                c.exchange?.cancel(true)
            }, connectTimeout.toMillis(), TimeUnit.MILLISECONDS)
            val f = http.client.sendAsync(b.build(), handler)
            c.exchange = f
            f.whenComplete { resp, err ->
                timer.cancel(false)
                val a = answer.get()
                when {
                    g != gen -> { c.close(); result.complete(Outcome.Stopped) }
                    err != null -> result.complete(Outcome.Failed(c.why ?: "cannot reach ${baseUrl.scheme}://${baseUrl.authority} (${HttpTransport.unwrap(err).let { it.javaClass.simpleName + (it.message?.let { m -> ": $m" } ?: "") }})"))
                    a == StreamAnswer.Live -> c.done.whenComplete { o, _ -> result.complete(o ?: Outcome.Failed("stream ended")) }
                    else -> {
                        val error = "GET /api/v1/events answered ${resp.statusCode()}${problemDetail(resp.body())}"
                        result.complete(
                            when (a) {
                                StreamAnswer.Unsupported -> Outcome.Unsupported(error)
                                StreamAnswer.Unauthorized -> if (bearer.renewable) { bearer.invalidate(); Outcome.Retry(error, null) } else Outcome.Unauthorized(error)
                                StreamAnswer.Restart -> Outcome.Restart(error)
                                is StreamAnswer.Retry -> Outcome.Retry(error, a.retryAfterMs)
                                else -> Outcome.Failed(error)
                            },
                        )
                    }
                }
            }
        }
        return result
    }

    private fun problemDetail(body: String?): String = try {
        val n = Json.parse(body ?: "")
        (n.text("detail") ?: n.text("title"))?.let { ": $it" } ?: ""
    } catch (e: Exception) { "" }
}
