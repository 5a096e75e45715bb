package org.stellaops.core

import com.fasterxml.jackson.databind.JsonNode
import java.net.URI
import java.time.Clock
import java.time.Duration
import java.time.Instant
import java.util.concurrent.CompletableFuture
import java.util.concurrent.CompletionException
import java.util.concurrent.Executor
import java.util.concurrent.TimeUnit

/** Tokens as returned by the Authority's token endpoint, with the instant they were issued. */
data class TokenSet(
    val accessToken: String,
    val tokenType: String,
    val refreshToken: String?,
    val scope: String?,
    val issuedAt: Instant,
    val expiresAt: Instant,
) {
    /** Refresh is due at 80 % of the token's lifetime. */
    fun refreshDueAt(): Instant = issuedAt.plusMillis((Duration.between(issuedAt, expiresAt).toMillis() * 0.8).toLong())

    fun isExpired(now: Instant): Boolean = !now.isBefore(expiresAt)
    fun needsRefresh(now: Instant): Boolean = !now.isBefore(refreshDueAt())

    fun toJson(): String = Json.write(
        Json.obj(
            "accessToken" to accessToken, "tokenType" to tokenType, "refreshToken" to refreshToken,
            "scope" to scope, "issuedAt" to issuedAt.toString(), "expiresAt" to expiresAt.toString(),
        )
    )

    companion object {
        fun fromJson(s: String): TokenSet {
            val n = Json.parse(s)
            return TokenSet(
                n.str("accessToken")!!, n.str("tokenType") ?: "Bearer", n.str("refreshToken"), n.str("scope"),
                Instant.parse(n.str("issuedAt")), Instant.parse(n.str("expiresAt")),
            )
        }

        /** Parses an OAuth token response; [previousRefresh] is kept when the server does not rotate it. */
        fun fromTokenResponse(n: JsonNode, now: Instant, previousRefresh: String? = null): TokenSet {
            val access = n.str("access_token") ?: throw StellaException("token response has no access_token")
            val expiresIn = n.long("expires_in") ?: 300L
            return TokenSet(
                accessToken = access,
                tokenType = n.str("token_type") ?: "Bearer",
                refreshToken = n.str("refresh_token") ?: previousRefresh,
                scope = n.str("scope"),
                issuedAt = now,
                expiresAt = now.plusSeconds(expiresIn),
            )
        }
    }
}

/** Where tokens live. The IDE implements this on PasswordSafe; tests use [InMemoryTokenStore]. Never a plain file. */
interface TokenStore {
    fun load(key: String): TokenSet?
    fun save(key: String, tokens: TokenSet)
    fun clear(key: String)
}

class InMemoryTokenStore : TokenStore {
    private val map = java.util.concurrent.ConcurrentHashMap<String, String>()
    override fun load(key: String): TokenSet? = map[key]?.let(TokenSet::fromJson)
    override fun save(key: String, tokens: TokenSet) { map[key] = tokens.toJson() }
    override fun clear(key: String) { map.remove(key) }
}

/** Endpoints found through `/.well-known/openid-configuration`, or the legacy fallback. */
data class AuthorityEndpoints(
    val issuer: String?,
    val tokenEndpoint: URI,
    val deviceAuthorizationEndpoint: URI?,
    val revocationEndpoint: URI?,
    val grantTypes: List<String>,
    val discovered: Boolean,
)

data class DeviceAuthorization(
    val deviceCode: String,
    val userCode: String,
    val verificationUri: String,
    val verificationUriComplete: String?,
    val expiresIn: Long,
    val interval: Long,
)

const val DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"

/**
 * Client of the Stella Ops Authority. The token endpoint is `/token`, found through discovery; when
 * discovery is unavailable the legacy `/oauth/token` alias is used (deprecated upstream, 410 after May 2026).
 */
class AuthorityClient(
    val baseUrl: URI,
    private val http: HttpTransport,
    private val clientId: String = "stella-ide",
    private val clientSecret: String? = null,
    private val clock: Clock = Clock.systemUTC(),
) {
    @Volatile private var endpoints: AuthorityEndpoints? = null

    /** Set when the token endpoint answered with a `Deprecation` header (the legacy `/oauth/token`): its `Warning`. */
    @Volatile var deprecation: String? = null
        private set

    fun discover(cancellation: Cancellation? = null): CompletableFuture<AuthorityEndpoints> {
        endpoints?.let { return CompletableFuture.completedFuture(it) }
        return http.send("GET", baseUrl.resolvePath("/.well-known/openid-configuration"), cancellation = cancellation)
            .handle { r, err ->
                if (err != null) {
                    val c = HttpTransport.unwrap(err)
                    if (c is OfflineException || c is java.util.concurrent.CancellationException) throw CompletionException(c)
                    fallback()
                } else if (r.ok) {
                    val n = try { r.json() } catch (e: Exception) { null }
                    val token = n.str("token_endpoint")
                    if (token == null) fallback() else AuthorityEndpoints(
                        issuer = n.str("issuer"),
                        tokenEndpoint = absolute(token),
                        deviceAuthorizationEndpoint = n.str("device_authorization_endpoint")?.let(::absolute),
                        revocationEndpoint = n.str("revocation_endpoint")?.let(::absolute),
                        grantTypes = n.node("grant_types_supported")?.map { it.asText() } ?: emptyList(),
                        discovered = true,
                    )
                } else fallback()
            }.thenApply { e -> endpoints = e; e }
    }

    private fun absolute(s: String): URI = URI.create(s).let { if (it.isAbsolute) it else baseUrl.resolvePath(s) }

    private fun fallback() = AuthorityEndpoints(
        issuer = null,
        tokenEndpoint = baseUrl.resolvePath("/oauth/token"),
        deviceAuthorizationEndpoint = null,
        revocationEndpoint = null,
        grantTypes = emptyList(),
        discovered = false,
    )

    fun clientCredentials(scope: String, extra: Map<String, String> = emptyMap(), cancellation: Cancellation? = null): CompletableFuture<TokenSet> =
        tokenRequest(listOf("grant_type" to "client_credentials", "scope" to scope) + extra.toList(), null, cancellation)

    fun refresh(refreshToken: String, scope: String? = null, extra: Map<String, String> = emptyMap(), cancellation: Cancellation? = null): CompletableFuture<TokenSet> =
        tokenRequest(listOf("grant_type" to "refresh_token", "refresh_token" to refreshToken, "scope" to scope) + extra.toList(), refreshToken, cancellation)

    /** Step one of the device flow (RFC 8628). Fails with [StellaException] when the Authority offers no device endpoint. */
    fun startDeviceAuthorization(scope: String, cancellation: Cancellation? = null): CompletableFuture<DeviceAuthorization> =
        discover(cancellation).thenCompose { ep ->
            val uri = ep.deviceAuthorizationEndpoint ?: throw CompletionException(StellaException("the Authority does not offer device authorization"))
            http.send("POST", uri, body = HttpTransport.form(*credentials().toTypedArray(), "scope" to scope),
                contentType = FORM, cancellation = cancellation)
        }.thenApply { r ->
            if (!r.ok) throw CompletionException(HttpTransport.error(r))
            val n = r.json()
            DeviceAuthorization(
                deviceCode = n.str("device_code") ?: throw CompletionException(StellaException("no device_code")),
                userCode = n.str("user_code") ?: "",
                verificationUri = n.str("verification_uri") ?: n.str("verification_url") ?: "",
                verificationUriComplete = n.str("verification_uri_complete"),
                expiresIn = n.long("expires_in") ?: 600,
                interval = n.long("interval") ?: 5,
            )
        }

    /**
     * Step two of the device flow: polls the token endpoint every `interval` seconds (plus 5 s on
     * `slow_down`) until tokens arrive, the user denies, the code expires, or [maxWait] elapses.
     */
    fun pollDeviceToken(
        auth: DeviceAuthorization,
        maxWait: Duration = Duration.ofSeconds(auth.expiresIn),
        intervalUnit: TimeUnit = TimeUnit.SECONDS,
        cancellation: Cancellation? = null,
    ): CompletableFuture<TokenSet> {
        val deadline = System.nanoTime() + minOf(maxWait, Duration.ofSeconds(auth.expiresIn)).toNanos()
        val result = CompletableFuture<TokenSet>()
        cancellation?.register(result)
        fun attempt(interval: Long) {
            if (result.isDone) return
            if (System.nanoTime() > deadline) { result.completeExceptionally(StellaException("device authorization timed out")); return }
            val delayed: Executor = CompletableFuture.delayedExecutor(interval, intervalUnit)
            CompletableFuture.runAsync({}, delayed)
                .thenCompose { tokenRequest(listOf("grant_type" to DEVICE_CODE_GRANT, "device_code" to auth.deviceCode), null, cancellation) }
                .whenComplete { t, err ->
                    if (err == null) { result.complete(t); return@whenComplete }
                    val c = HttpTransport.unwrap(err)
                    when {
                        c is ApiException && c.code == "authorization_pending" -> attempt(interval)
                        c is ApiException && c.code == "slow_down" -> attempt(interval + 5)
                        else -> result.completeExceptionally(c)
                    }
                }
        }
        attempt(auth.interval)
        return result
    }

    fun revoke(token: String, cancellation: Cancellation? = null): CompletableFuture<Boolean> =
        discover(cancellation).thenCompose { ep ->
            val uri = ep.revocationEndpoint ?: return@thenCompose CompletableFuture.completedFuture(false)
            http.send("POST", uri, body = HttpTransport.form(*credentials().toTypedArray(), "token" to token),
                contentType = FORM, cancellation = cancellation).thenApply { it.ok }
        }

    private fun credentials(): List<Pair<String, String?>> = listOf("client_id" to clientId, "client_secret" to clientSecret)

    private fun tokenRequest(params: List<Pair<String, String?>>, previousRefresh: String?, cancellation: Cancellation?): CompletableFuture<TokenSet> =
        discover(cancellation).thenCompose { ep ->
            val body = HttpTransport.form(*(params + credentials()).toTypedArray())
            http.send("POST", ep.tokenEndpoint, body = body, contentType = FORM, cancellation = cancellation)
        }.thenApply { r ->
            if (r.header("Deprecation") != null) deprecation = r.header("Warning") ?: "token endpoint deprecated (Sunset: ${r.header("Sunset") ?: "?"})"
            if (!r.ok) throw CompletionException(HttpTransport.error(r))
            TokenSet.fromTokenResponse(r.json(), clock.instant(), previousRefresh)
        }

    companion object { const val FORM = "application/x-www-form-urlencoded" }
}

/** Supplies the bearer value for an API client and is told when the server rejected it. */
interface BearerProvider {
    fun bearer(cancellation: Cancellation? = null): CompletableFuture<String>
    fun invalidate() {}
    /** Whether [invalidate] can lead to a different bearer, i.e. whether a 401 is worth one retry. */
    val renewable: Boolean get() = true
}

/** A fixed API key (this daemon's `[[auth.api_keys]]`). */
class StaticBearer(private val key: String) : BearerProvider {
    override fun bearer(cancellation: Cancellation?): CompletableFuture<String> = CompletableFuture.completedFuture(key)
    override val renewable: Boolean get() = false
}

/**
 * Keeps a valid access token: loads it from the [TokenStore], refreshes it at 80 % of its lifetime or
 * after a 401, falls back to client credentials when configured, and otherwise asks the user to sign in.
 * Concurrent callers share one refresh.
 */
class TokenManager(
    private val authority: AuthorityClient,
    private val store: TokenStore,
    private val storeKey: String,
    private val scope: String = "orch:read",
    private val useClientCredentials: Boolean = false,
    private val clock: Clock = Clock.systemUTC(),
) : BearerProvider {
    private val lock = Any()
    private var chain: CompletableFuture<*> = CompletableFuture.completedFuture(Unit)
    private var renewal: CompletableFuture<TokenSet>? = null

    fun current(): TokenSet? = store.load(storeKey)
    val isSignedIn: Boolean get() = current() != null || useClientCredentials

    override fun bearer(cancellation: Cancellation?): CompletableFuture<String> = validTokens(cancellation).thenApply { it.accessToken }

    fun validTokens(cancellation: Cancellation? = null): CompletableFuture<TokenSet> {
        val now = clock.instant()
        val t = store.load(storeKey)
        if (t != null && !t.needsRefresh(now)) return CompletableFuture.completedFuture(t)
        return renew()
    }

    /** Called after a 401: the stored access token is no longer accepted. */
    override fun invalidate() {
        val t = store.load(storeKey) ?: return
        store.save(storeKey, t.copy(expiresAt = t.issuedAt))
    }

    fun signInWithClientCredentials(extra: Map<String, String> = emptyMap()): CompletableFuture<TokenSet> =
        authority.clientCredentials(scope, extra).thenApply { store.save(storeKey, it); it }

    fun signInWithDeviceCode(
        onCode: (DeviceAuthorization) -> Unit,
        maxWait: Duration = Duration.ofMinutes(10),
        cancellation: Cancellation? = null,
    ): CompletableFuture<TokenSet> =
        authority.startDeviceAuthorization(scope, cancellation)
            .thenCompose { d -> onCode(d); authority.pollDeviceToken(d, maxWait, cancellation = cancellation) }
            .thenApply { store.save(storeKey, it); it }

    /**
     * A bearer for one mutating call that needs `orch:operate`. The Authority requires `operator_reason` and
     * `operator_ticket` with that scope, so the token is requested per operation (client credentials, or the
     * refresh token of the signed-in user; the rotated tokens are stored).
     */
    fun operatorBearer(reason: String, ticket: String): BearerProvider = object : BearerProvider {
        override fun bearer(cancellation: Cancellation?): CompletableFuture<String> {
            val scope = "$scope orch:operate".split(' ').filter { it.isNotBlank() }.distinct().joinToString(" ")
            val extra = mapOf("operator_reason" to reason, "operator_ticket" to ticket)
            return serialized { old ->
                when {
                    old?.refreshToken != null -> authority.refresh(old.refreshToken, scope, extra, cancellation)
                        .thenApply { t -> store.save(storeKey, t); t }
                    useClientCredentials -> authority.clientCredentials(scope, extra, cancellation)
                    else -> CompletableFuture.failedFuture(NotSignedInException())
                }
            }.thenApply { it.accessToken }
        }
    }

    /** Forgets the tokens (after any refresh in flight, which would otherwise store new ones) and revokes the refresh token. */
    fun signOut(): CompletableFuture<Unit> = serialized { t ->
        store.clear(storeKey)
        if (t?.refreshToken == null) CompletableFuture.completedFuture(Unit)
        else authority.revoke(t.refreshToken).handle<Unit> { _, _ -> }
    }

    /**
     * Runs [op] after every earlier token operation, with the tokens stored at that moment, so that a refresh
     * token (single use: the Authority rotates it) is never sent twice.
     */
    private fun <T> serialized(op: (TokenSet?) -> CompletableFuture<T>): CompletableFuture<T> = synchronized(lock) {
        val f = chain.handle { _, _ -> Unit }.thenCompose { op(store.load(storeKey)) }
        chain = f
        f
    }

    /** One renewal at a time; callers arriving meanwhile share it. */
    private fun renew(): CompletableFuture<TokenSet> = synchronized(lock) {
        renewal?.let { if (!it.isDone) return it }
        val f = serialized { old ->
            // An operation queued before this one may already have stored fresh tokens.
            if (old != null && !old.needsRefresh(clock.instant())) CompletableFuture.completedFuture(old) else renewNow(old)
        }
        renewal = f
        f
    }

    private fun renewNow(old: TokenSet?): CompletableFuture<TokenSet> {
        val f: CompletableFuture<TokenSet> = when {
            old?.refreshToken != null -> authority.refresh(old.refreshToken, scope).exceptionallyCompose { err ->
                val c = HttpTransport.unwrap(err)
                // invalid_grant: the refresh token is gone; forget it so the user is asked to sign in again.
                if (c is ApiException && c.status in 400..401) {
                    store.clear(storeKey)
                    if (useClientCredentials) authority.clientCredentials(scope)
                    else CompletableFuture.failedFuture(NotSignedInException("session expired, sign in again"))
                } else if (!old.isExpired(clock.instant())) {
                    // Authority unreachable but the access token is still valid: keep using it.
                    CompletableFuture.completedFuture(old)
                } else CompletableFuture.failedFuture(c)
            }
            useClientCredentials -> authority.clientCredentials(scope)
            old != null && !old.isExpired(clock.instant()) -> CompletableFuture.completedFuture(old)
            else -> CompletableFuture.failedFuture(NotSignedInException())
        }
        return f.thenApply { t -> if (t !== old) store.save(storeKey, t); t }
    }
}
