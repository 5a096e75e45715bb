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
    /** Which integrations raise notifications when they go unhealthy (`stellaops.notifications.follow`). */
    val follow: FollowMode = FollowMode.REFERENCED,
    /** `stellaops.notifications.muted`. */
    val notificationsMuted: Boolean = false,
    /** Pinned integrations, by name or id (`stellaops.integrations.pinned`). */
    val pinned: List<String> = emptyList(),
    /** `integrations:` of the project's stella.yaml: names or ids the project depends on. */
    val referencedIntegrations: List<String> = emptyList(),
    /** Follow the hub's event stream (GET /api/v1/events); false: poll only. */
    val liveUpdates: Boolean = true,
) {
    init {
        require(refreshIntervalSeconds in 5..3600) { "refresh interval must be 5..3600 s" }
        require(requestTimeoutSeconds in 1..120) { "request timeout must be 1..120 s" }
    }
}

enum class LiveMode { OFF, CONNECTING, LIVE, POLLING }

/** How integration status reaches the IDE: the hub's event stream, or polling the list. */
data class LiveState(val mode: LiveMode = LiveMode.OFF, val detail: String? = null) {
    /** For tooltips and the Integrations tab: "live (event stream)", "polling — …". */
    val text: String get() = when (mode) {
        LiveMode.LIVE -> "live (event stream${detail?.let { ", $it" } ?: ""})"
        LiveMode.CONNECTING -> "connecting to the event stream"
        LiveMode.POLLING -> "polling${detail?.let { " — $it" } ?: ""}"
        LiveMode.OFF -> ""
    }

    companion object {
        fun of(s: StreamStatus): LiveState = when (s) {
            is StreamStatus.Live -> LiveState(LiveMode.LIVE, s.resumedFrom?.let { "resumed after event $it" })
            is StreamStatus.Connecting -> LiveState(LiveMode.CONNECTING)
            is StreamStatus.Retrying -> LiveState(LiveMode.POLLING, "event stream: ${s.error}; retrying in ${(s.inMs + 500) / 1000} s")
            is StreamStatus.Unsupported -> LiveState(LiveMode.POLLING, "this hub has no event stream (${s.error})")
            is StreamStatus.Unauthorized -> LiveState(LiveMode.POLLING, "event stream refused: ${s.error}")
            StreamStatus.Stopped -> LiveState(LiveMode.OFF)
        }
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
    val live: LiveState = LiveState(),
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
    private val clock: Clock = Clock.systemUTC(),
    /** An integration the user follows went unhealthy, or an incident opened (called off the UI thread). */
    private val onHealthNotice: (HealthNotification) -> Unit = {},
    reconnectPolicy: ReconnectPolicy = ReconnectPolicy.DEFAULT,
    /** How often the list is read while the stream is live (names, deleted integrations). */
    private val reconcileInterval: Duration = Duration.ofMinutes(5),
    /** Delay before reading the list again when the tracker asks for it. */
    private val resyncDelay: Duration = Duration.ofMillis(200),
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
    @Volatile private var referenced: List<String> = settings.referencedIntegrations
    /** The live model of integration status, fed by lists and by the event stream. */
    val tracker = HealthTracker(followSettings())
    private val integrations = integrationsClient?.let { ic ->
        CachedResource.list("integrations", cache, Integration::toJson, Integration::from) { c ->
            ic.all(cancellation = c).thenApply { items ->
                tracker.setSettings(followSettings())
                tracker.applyList(items)
                tracker.integrations()
            }
        }
    }
    private val integrationsBearerOrToken: BearerProvider = integrationsBearer ?: tokens

    /** The hub's event stream; null without a daemon or with [StellaSettings.liveUpdates] off. */
    val eventStream: EventStreamClient? = integrationsClient?.takeIf { settings.liveUpdates }?.let { ic ->
        EventStreamClient(
            ic.baseUrl, http, integrationsBearerOrToken, executor,
            lastEventId = { tracker.lastEventId },
            onMessages = ::applyStreamMessages,
            onOpen = { resuming -> if (!resuming) loadIntegrationList() },
            onForgetPosition = { tracker.forgetPosition() },
            onStatus = { s -> setLive(LiveState.of(s)) },
            policy = reconnectPolicy,
            connectTimeout = Duration.ofSeconds(settings.requestTimeoutSeconds),
            clock = clock,
        )
    }
    private val stateLock = Any()
    @Volatile private var resyncScheduled = false
    @Volatile private var disposed = false
    @Volatile private var reconcile: java.util.concurrent.ScheduledFuture<*>? = null
    @Volatile private var listInFlight: CompletableFuture<*>? = null

    private val notify: (String) -> Unit = notify
    private val notifier = OfflineNotifier(notify)
    private val deprecationNoticed = java.util.concurrent.atomic.AtomicBoolean(false)
    private val listeners = CopyOnWriteArrayList<(ViewState) -> Unit>()
    @Volatile var state: ViewState = initialState()
        private set
    @Volatile private var inFlight: Cancellation? = null

    @Volatile private var lastError: Throwable? = null

    /**
     * The periodic task: a refresh that ended offline counts as a failure, so the scheduler backs off (honouring
     * Retry-After). While the event stream is live the integration list is left alone.
     */
    private val scheduler = RefreshScheduler(executor, Backoff(Duration.ofSeconds(settings.refreshIntervalSeconds)), {
        refresh(withIntegrations = eventStream?.isLive != true).thenApply { s -> if (s.connection == ConnectionState.OFFLINE) throw java.util.concurrent.CompletionException(lastError) }
    })

    private fun initialState(): ViewState = ViewState(
        if (tokens.isSignedIn) ConnectionState.CONNECTED else ConnectionState.SIGNED_OUT,
        releases.cached(), environments.cached(), deployments.cached(), integrations?.cached(),
    )

    fun addListener(l: (ViewState) -> Unit) { listeners += l; l(state) }
    fun removeListener(l: (ViewState) -> Unit) { listeners -= l }

    /** Starts the periodic refresh and the hub's event stream. */
    fun start() {
        scheduler.start()
        startStream()
    }

    /** The event stream runs once there is a credential for the hub (its API key, or the Authority sign-in). */
    private fun startStream() {
        val stream = eventStream ?: return
        if (disposed || !(tokens.isSignedIn || integrationsKeyed)) return
        synchronized(stateLock) {
            if (reconcile != null) return
            reconcile = executor.scheduleWithFixedDelay({ if (stream.isLive) loadIntegrationList() }, reconcileInterval.toMillis(), reconcileInterval.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS)
        }
        stream.start()
    }

    /** Refresh now (the Refresh action): everything, the integration list included; a stream that is down is retried. */
    fun refreshNow() {
        if (eventStream?.status == StreamStatus.Stopped) startStream() else eventStream?.reconnectNow()
        scheduler.refreshNow()
    }

    fun dispose() {
        disposed = true
        scheduler.stop()
        inFlight?.cancel()
        synchronized(stateLock) { reconcile?.cancel(false); reconcile = null }
        eventStream?.stop()
    }

    /** The project's stella.yaml `integrations:` changed: follow those from now on (no notification for the past). */
    fun setReferencedIntegrations(names: List<String>) {
        referenced = names
        tracker.setSettings(followSettings())
    }

    private fun followSettings() = FollowSettings(settings.follow, settings.notificationsMuted, settings.pinned, referenced)

    /** Whether the user follows this integration (notified when it goes unhealthy). */
    fun isFollowed(i: Integration): Boolean = tracker.isFollowed(i.id, i.name)

    fun isPinned(i: Integration): Boolean = i.id in settings.pinned || i.name in settings.pinned

    /** Messages from the event stream, applied at once: the views change without a poll. */
    fun applyStreamMessages(messages: List<SseMessage>) {
        tracker.setSettings(followSettings())
        var changed = false
        for (m in messages) changed = tracker.applyMessage(m) || changed
        if (changed) synchronized(stateLock) {
            publish(state.copy(integrations = Snapshot(tracker.integrations(), clock.instant(), stale = false)))
        }
        flushHealthNotices()
        if (tracker.needsResync) scheduleResync()
    }

    private fun flushHealthNotices() {
        for (n in tracker.drain()) try { onHealthNotice(n) } catch (e: Throwable) { /* the IDE's problem, not the stream's */ }
    }

    private fun scheduleResync() {
        if (resyncScheduled) return
        resyncScheduled = true
        executor.schedule({ resyncScheduled = false; loadIntegrationList() }, resyncDelay.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS)
    }

    /** Reads the integration list alone (the stream opened without a position, the tracker asked, or reconciliation). */
    fun loadIntegrationList(): CompletableFuture<*> {
        val res = integrations ?: return CompletableFuture.completedFuture(null)
        listInFlight?.takeIf { !it.isDone }?.let { return it }
        val f = res.load().handle { snap, err ->
            flushHealthNotices()
            if (err == null && snap != null) synchronized(stateLock) {
                publish(state.copy(integrations = if (snap.stale) snap else Snapshot(tracker.integrations(), snap.fetchedAt, stale = false)))
            }
        }
        listInFlight = f
        return f
    }

    private fun setLive(live: LiveState) = synchronized(stateLock) {
        if (state.live != live) publish(state.copy(live = live))
    }

    /**
     * Loads all lists in parallel. Never fails: errors end up in [ViewState.connection] and [ViewState.message].
     * [withIntegrations] false (the stream is live) leaves the integration list as it is.
     */
    fun refresh(withIntegrations: Boolean = true): CompletableFuture<ViewState> {
        inFlight?.cancel()
        val c = Cancellation().also { inFlight = it }
        val i = integrations?.takeIf { withIntegrations && (tokens.isSignedIn || integrationsKeyed) }?.load(c) ?: CompletableFuture.completedFuture(null)
        if (!tokens.isSignedIn) {
            // Signed out of the Authority: integration health still shows when the daemon has its own API key.
            return i.handle { snap, _ ->
                if (c.isCancelled) return@handle state
                flushHealthNotices()
                afterListRead(snap)
                synchronized(stateLock) {
                    publish(state.copy(connection = ConnectionState.SIGNED_OUT, integrations = fresh(snap) ?: state.integrations, message = "Sign in to Stella Ops"))
                }
            }
        }
        val r = releases.load(c); val e = environments.load(c); val d = deployments.load(c)
        authority.deprecation?.let { if (deprecationNoticed.compareAndSet(false, true)) notify("The Authority answered from a deprecated endpoint: $it") }
        return CompletableFuture.allOf(r.exceptionally { null }, e.exceptionally { null }, d.exceptionally { null }, i.exceptionally { null })
            .thenApply {
                // A newer refresh (or dispose) cancelled this one: it publishes nothing.
                if (c.isCancelled) return@thenApply state
                flushHealthNotices()
                if (!i.isCompletedExceptionally) afterListRead(i.join())
                synchronized(stateLock) { buildAndPublish(r, e, d, i) }
            }
    }

    /** A list read that reached the hub is a reason to retry a stream lost to the network now. */
    private fun afterListRead(snap: Snapshot<List<Integration>>?) {
        if (snap != null && !snap.stale && eventStream?.status is StreamStatus.Retrying) eventStream.reconnectNow()
    }

    /** A fresh list is shown as the tracker has it now (events may have come in since the read). */
    private fun fresh(snap: Snapshot<List<Integration>>?): Snapshot<List<Integration>>? =
        if (snap == null || snap.stale) snap else Snapshot(tracker.integrations(), snap.fetchedAt, stale = false)

    private fun buildAndPublish(
        r: CompletableFuture<Snapshot<List<Release>>>, e: CompletableFuture<Snapshot<List<Environment>>>,
        d: CompletableFuture<Snapshot<List<Promotion>>>, i: CompletableFuture<out Snapshot<List<Integration>>?>,
    ): ViewState {
        val results = listOf(r, e, d, i)
        val errors = results.mapNotNull { f -> if (f.isCompletedExceptionally) HttpTransport.unwrap(f.handle { _, t -> t }.join()!!) else null }
        val snapshots = results.mapNotNull { f -> if (f.isCompletedExceptionally) null else f.join() }
        val connection = when {
            errors.any { it is NotSignedInException } -> ConnectionState.SIGNED_OUT
            errors.any { it is OfflineException || CachedResource.isTransient(it) } || snapshots.any { it.stale } -> ConnectionState.OFFLINE
            else -> ConnectionState.CONNECTED
        }
        val message = errors.firstOrNull()?.message ?: snapshots.firstNotNullOfOrNull { it.error }
        val integ = when {
            integrations == null -> null
            !i.isCompletedExceptionally && i.join() != null -> fresh(i.join())
            else -> orKeep(i, state.integrations)
        }
        val s = ViewState(
            connection,
            orKeep(r, state.releases), orKeep(e, state.environments), orKeep(d, state.deployments),
            integ, message, state.live,
        )
        lastError = if (connection == ConnectionState.OFFLINE) errors.firstOrNull() ?: OfflineException(settings.serverUrl, null) else null
        return publish(s)
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
        if (!integrationsKeyed) {
            eventStream?.stop()
            synchronized(stateLock) { reconcile?.cancel(false); reconcile = null }
        }
        synchronized(stateLock) { publish(ViewState(ConnectionState.SIGNED_OUT, message = "Signed out", live = state.live)) }
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

    /** Runs a health check; its result shows at once (and the lists are refreshed, unless the stream brings the change). */
    fun healthCheck(integrationId: String, cancellation: Cancellation? = null): CompletableFuture<HealthCheckResult> {
        val ic = integrationsClient ?: return CompletableFuture.failedFuture(StellaException("no integrations daemon configured"))
        return ic.healthCheck(integrationId, cancellation).whenComplete { r, _ ->
            if (r?.supported != true) return@whenComplete
            tracker.setSettings(followSettings())
            if (tracker.applyCheck(integrationId, r.status.wire, r.reason, r.message, r.checkedAt)) {
                synchronized(stateLock) { publish(state.copy(integrations = state.integrations?.copy(value = tracker.integrations()))) }
                flushHealthNotices()
            }
            if (eventStream?.isLive != true) refreshNow()
        }
    }

    /** What is deployed to an environment named in stella.yaml, e.g. "myapp v1.4.2", or "… (offline)" from stale data. */
    fun environmentSummary(name: String): String? {
        val env = state.environments?.value?.firstOrNull { it.name == name } ?: return null
        val cur = env.currentRelease?.name ?: "nothing deployed"
        return if (state.environments?.stale == true) "$cur (offline)" else cur
    }
}
