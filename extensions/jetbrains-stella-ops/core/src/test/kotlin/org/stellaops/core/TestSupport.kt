package org.stellaops.core

import com.sun.net.httpserver.HttpExchange
import com.sun.net.httpserver.HttpServer
import java.net.InetSocketAddress
import java.net.URI
import java.time.Clock
import java.time.Instant
import java.time.ZoneOffset
import java.util.concurrent.CompletableFuture
import java.util.concurrent.Executors
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger

/** A clock the test moves by hand. */
class MutableClock(var now: Instant = Instant.parse("2026-11-28T12:00:00Z")) : Clock() {
    override fun getZone() = ZoneOffset.UTC
    override fun withZone(zone: java.time.ZoneId?) = this
    override fun instant(): Instant = now
    fun advance(seconds: Long) { now = now.plusSeconds(seconds) }
}

/** A recorded request to [LocalServer]. */
data class Seen(val method: String, val path: String, val query: String?, val headers: Map<String, String>, val body: String)

/** A real HTTP server on 127.0.0.1 for edge cases the shared fake server does not produce (delays, dropped connections). */
class LocalServer : AutoCloseable {
    val server: HttpServer = HttpServer.create(InetSocketAddress("127.0.0.1", 0), 0)
    val seen = java.util.concurrent.CopyOnWriteArrayList<Seen>()
    val hits = AtomicInteger()
    private val pool = Executors.newCachedThreadPool { r -> Thread(r).apply { isDaemon = true } }

    init { server.executor = pool; server.start() }

    val uri: URI get() = URI.create("http://127.0.0.1:${server.address.port}")

    fun route(path: String, handler: (Seen) -> Triple<Int, String, Map<String, String>>) {
        server.createContext(path) { ex: HttpExchange ->
            hits.incrementAndGet()
            val s = Seen(
                ex.requestMethod, ex.requestURI.path, ex.requestURI.rawQuery,
                ex.requestHeaders.entries.associate { it.key.lowercase() to it.value.first() },
                ex.requestBody.readAllBytes().toString(Charsets.UTF_8),
            )
            seen += s
            try {
                val (status, body, headers) = handler(s)
                headers.forEach { (k, v) -> ex.responseHeaders.add(k, v) }
                if (!headers.keys.any { it.equals("Content-Type", true) }) ex.responseHeaders.add("Content-Type", "application/json")
                val bytes = body.toByteArray()
                ex.sendResponseHeaders(status, if (bytes.isEmpty()) -1 else bytes.size.toLong())
                if (bytes.isNotEmpty()) ex.responseBody.use { it.write(bytes) }
            } catch (e: InterruptedException) {
            } finally { ex.close() }
        }
    }

    override fun close() { server.stop(0); pool.shutdownNow() }
}

fun reply(status: Int, body: String, vararg headers: Pair<String, String>) = Triple(status, body, mapOf(*headers))

fun <T> CompletableFuture<T>.await(seconds: Long = 15): T = get(seconds, TimeUnit.SECONDS)

/** The exception a failed future carries, unwrapped. */
fun CompletableFuture<*>.failure(seconds: Long = 15): Throwable =
    try { get(seconds, TimeUnit.SECONDS); throw AssertionError("expected failure") }
    catch (e: java.util.concurrent.ExecutionException) { HttpTransport.unwrap(e) }
    catch (e: java.util.concurrent.CancellationException) { e }

fun formOf(body: String): Map<String, String> = body.split("&").filter { it.isNotEmpty() }.associate {
    val (k, v) = it.split("=", limit = 2) + listOf("")
    java.net.URLDecoder.decode(k, Charsets.UTF_8) to java.net.URLDecoder.decode(v, Charsets.UTF_8)
}

/** An unused loopback port (nothing listens there). */
fun closedPort(): Int = java.net.ServerSocket(0, 1, java.net.InetAddress.getByName("127.0.0.1")).use { it.localPort }
