package org.stellaops.core

import java.net.URI
import java.nio.file.Path
import java.time.Clock
import java.time.Duration
import java.util.concurrent.CompletableFuture
import java.util.concurrent.CopyOnWriteArrayList
import java.util.concurrent.ScheduledExecutorService

/** User settings (IDE: the Stella Ops settings page; keys follow the shared proposal `stellaops.*`). */
data class StellaSettings(
    /** Orchestrator base URL (`stellaops.serverUrl`); a `server:` in stella.yaml overrides it. */
    val serverUrl: String,
    /** Authority base URL (`stellaops.authorityUrl`); defaults to the server URL. */
    val authorityUrl: String? = null,
    val clientId: String = "stella-ide",
    /** Only for confidential clients (automation); IDE users sign in with the device flow. */
    val clientSecret: String? = null,
    val useClientCredentials: Boolean = false,
    /** This daemon's base URL; integration health is hidden when null. */
    val integrationsUrl: String? = null,
    /** Only releases of this project (`project:` of stella.yaml). */
    val project: String? = null,
    val refreshIntervalSeconds: Long = 30,
    val requestTimeoutSeconds: Long = 10,
) {
    init {
        require(refreshIntervalSeconds in 5..3600) { "refresh interval must be 5..3600 s" }
        require(requestTimeoutSeconds in 1..120) { "request timeout must be 1..120 s" }
    }
}

/** Everything the tool window, status bar and annotator show, in one immutable value. */
data class ViewState(
    val connection: ConnectionState,
    val releases: Snapshot<List<Release>>? = null,
    val environments: Snapshot<List<Environment>>? = null,
    val deployments: Snapshot<List<Promotion>>? = null,
    val integrations: Snapshot<List<Integration>>? = null,
    val message: String? = null,
) {
    val health: HealthSummary? get() = integrations?.value?.let(HealthSummary::of)
    val statusText: String get() = statusText(connection, health)
}

/**
 * The whole client behaviour, independent of any IDE: sign-in, the four lists with offline fallback,
 * periodic refresh with backoff, promotion and health checks. The IDE module only renders [ViewState]
 * and forwards user actions.
 */
class StellaOpsCore(
    val settings: StellaSettings,
    tokenStore: TokenStore,
    cacheFile: Path?,
    private val executor: ScheduledExecutorService,
    notify: (String) -> Unit,
    /** Bearer for this daemon; defaults to the Authority token (the daemon accepts the Authority's JWTs). */
    integrationsBearer: BearerProvider? = null,
    clock: Clock = Clock.systemUTC(),
) {
    val http = HttpTransport(Duration.ofSeconds(settings.requestTimeoutSeconds), Duration.ofSeconds(minOf(5, settings.requestTimeoutSeconds)))
    val authority = AuthorityClient(URI.create(settings.authorityUrl ?: settings.serverUrl), http, settings.clientId, settings.clientSecret, clock)
    val tokens = TokenManager(authority, tokenStore, "${settings.authorityUrl ?: settings.serverUrl}|${settings.clientId}", useClientCredentials = settings.useClientCredentials, clock = clock)
    val orchestrator = OrchestratorClient(URI.create(settings.serverUrl), http, tokens)
    val integrationsClient: IntegrationsClient? = settings.integrationsUrl?.let { IntegrationsClient(URI.create(it), http, integrationsBearer ?: tokens) }
    /** The daemon is called with its own API key, independent of the Authority sign-in. */
    private val integrationsKeyed = integrationsBearer != null && !integrationsBearer.renewable

    private val cache = OfflineCache(cacheFile, clock)
    private val releases = CachedResource.list("releases", cache, Release::toJson, Release::from) { c -> orchestrator.releases(settings.project, c) }
    private val environments = CachedResource.list("environments", cache, Environment::toJson, Environment::from) { c -> orchestrator.environments(c) }
    private val deployments = CachedResource.list("promotions", cache, Promotion::toJson, Promotion::from) { c -> orchestrator.promotions(cancellation = c) }
    private val integrations = integrationsClient?.let { ic -> CachedResource.list("integrations", cache, Integration::toJson, Integration::from) { c -> ic.all(cancellation = c) } }

    private val notify: (String) -> Unit = notify
    private val notifier = OfflineNotifier(notify)
    private val deprecationNoticed = java.util.concurrent.atomic.AtomicBoolean(false)
    private val listeners = CopyOnWriteArrayList<(ViewState) -> Unit>()
    @Volatile var state: ViewState = initialState()
        private set
    @Volatile private var inFlight: Cancellation? = null

    @Volatile private var lastError: Throwable? = null

    /** The periodic task: a refresh that ended offline counts as a failure, so the scheduler backs off (honouring Retry-After). */
    private val scheduler = RefreshScheduler(executor, Backoff(Duration.ofSeconds(settings.refreshIntervalSeconds)), {
        refresh().thenApply { s -> if (s.connection == ConnectionState.OFFLINE) throw java.util.concurrent.CompletionException(lastError) }
    })

    private fun initialState(): ViewState = ViewState(
        if (tokens.isSignedIn) ConnectionState.CONNECTED else ConnectionState.SIGNED_OUT,
        releases.cached(), environments.cached(), deployments.cached(), integrations?.cached(),
    )

    fun addListener(l: (ViewState) -> Unit) { listeners += l; l(state) }
    fun removeListener(l: (ViewState) -> Unit) { listeners -= l }

    fun start() = scheduler.start()
    fun refreshNow() = scheduler.refreshNow()
    fun dispose() { scheduler.stop(); inFlight?.cancel() }

    /** Loads all lists in parallel. Never fails: errors end up in [ViewState.connection] and [ViewState.message]. */
    fun refresh(): CompletableFuture<ViewState> {
        inFlight?.cancel()
        val c = Cancellation().also { inFlight = it }
        val i = integrations?.takeIf { tokens.isSignedIn || integrationsKeyed }?.load(c) ?: CompletableFuture.completedFuture(null)
        if (!tokens.isSignedIn) {
            // Signed out of the Authority: integration health still shows when the daemon has its own API key.
            return i.handle { snap, _ ->
                if (c.isCancelled) return@handle state
                publish(state.copy(connection = ConnectionState.SIGNED_OUT, integrations = snap ?: state.integrations, message = "Sign in to Stella Ops"))
            }
        }
        val r = releases.load(c); val e = environments.load(c); val d = deployments.load(c)
        authority.deprecation?.let { if (deprecationNoticed.compareAndSet(false, true)) notify("The Authority answered from a deprecated endpoint: $it") }
        return CompletableFuture.allOf(r.exceptionally { null }, e.exceptionally { null }, d.exceptionally { null }, i.exceptionally { null })
            .thenApply {
                // A newer refresh (or dispose) cancelled this one: it publishes nothing.
                if (c.isCancelled) return@thenApply state
                val results = listOf(r, e, d, i)
                val errors = results.mapNotNull { f -> if (f.isCompletedExceptionally) HttpTransport.unwrap(f.handle { _, t -> t }.join()!!) else null }
                val snapshots = listOf(r, e, d, i).mapNotNull { f -> if (f.isCompletedExceptionally) null else f.join() }
                val connection = when {
                    errors.any { it is NotSignedInException } -> ConnectionState.SIGNED_OUT
                    errors.any { it is OfflineException || CachedResource.isTransient(it) } || snapshots.any { it.stale } -> ConnectionState.OFFLINE
                    else -> ConnectionState.CONNECTED
                }
                val message = errors.firstOrNull()?.message ?: snapshots.firstNotNullOfOrNull { it.error }
                val s = ViewState(
                    connection,
                    orKeep(r, state.releases), orKeep(e, state.environments), orKeep(d, state.deployments),
                    if (integrations == null) null else orKeep(i, state.integrations), message,
                )
                lastError = if (connection == ConnectionState.OFFLINE) errors.firstOrNull() ?: OfflineException(settings.serverUrl, null) else null
                publish(s)
            }
    }

    private fun <T> orKeep(f: CompletableFuture<out Snapshot<T>?>, old: Snapshot<T>?): Snapshot<T>? =
        if (f.isCompletedExceptionally) old?.copy(stale = true) else f.join() ?: old

    private fun publish(s: ViewState): ViewState {
        state = s
        notifier.update(s.connection, s.message)
        listeners.forEach { runCatching { it(s) } }
        return s
    }

    // ---------------- actions ----------------

    fun signInWithDeviceCode(onCode: (DeviceAuthorization) -> Unit, cancellation: Cancellation? = null): CompletableFuture<TokenSet> =
        tokens.signInWithDeviceCode(onCode, Duration.ofMinutes(10), cancellation).whenComplete { _, err -> if (err == null) refreshNow() }

    fun signOut(): CompletableFuture<Unit> = tokens.signOut().also { inFlight?.cancel() }.whenComplete { _, _ ->
        cache.clear()
        publish(ViewState(ConnectionState.SIGNED_OUT, message = "Signed out"))
    }

    /** Promotes a release to an environment given by id or name (as written in stella.yaml). */
    fun promote(releaseId: String, environment: String, reason: String, ticket: String, cancellation: Cancellation? = null): CompletableFuture<Promotion> {
        require(reason.isNotBlank()) { "a reason is required" }
        require(ticket.isNotBlank()) { "a ticket is required for orch:operate" }
        return orchestrator.environments(cancellation).thenCompose { envs ->
            val env = envs.firstOrNull { it.id == environment } ?: envs.firstOrNull { it.name == environment }
                ?: throw java.util.concurrent.CompletionException(StellaException("unknown environment \"$environment\""))
            orchestrator.promote(releaseId, env.id, reason, ticket, tokens.operatorBearer(reason, ticket), cancellation)
        }.whenComplete { _, err -> if (err == null) refreshNow() }
    }

    fun healthCheck(integrationId: String, cancellation: Cancellation? = null): CompletableFuture<HealthCheckResult> {
        val ic = integrationsClient ?: return CompletableFuture.failedFuture(StellaException("no integrations daemon configured"))
        return ic.healthCheck(integrationId, cancellation).whenComplete { r, _ -> if (r?.supported == true) refreshNow() }
    }

    /** What is deployed to an environment named in stella.yaml, e.g. "myapp v1.4.2", or "… (offline)" from stale data. */
    fun environmentSummary(name: String): String? {
        val env = state.environments?.value?.firstOrNull { it.name == name } ?: return null
        val cur = env.currentRelease?.name ?: "nothing deployed"
        return if (state.environments?.stale == true) "$cur (offline)" else cur
    }
}
