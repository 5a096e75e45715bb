package org.stellaops.intellij

import com.intellij.codeInsight.daemon.DaemonCodeAnalyzer
import com.intellij.ide.BrowserUtil
import com.intellij.notification.NotificationAction
import com.intellij.notification.NotificationGroupManager
import com.intellij.notification.NotificationType
import com.intellij.openapi.Disposable
import com.intellij.openapi.application.ApplicationManager
import com.intellij.openapi.application.ModalityState
import com.intellij.openapi.application.PathManager
import com.intellij.openapi.application.ReadAction
import com.intellij.openapi.components.Service
import com.intellij.openapi.project.Project
import com.intellij.openapi.project.guessProjectDir
import com.intellij.openapi.startup.ProjectActivity
import com.intellij.openapi.components.service
import com.intellij.openapi.fileEditor.FileEditorManager
import com.intellij.openapi.util.Disposer
import com.intellij.openapi.vfs.VfsUtilCore
import com.intellij.openapi.vfs.VirtualFileManager
import com.intellij.openapi.vfs.newvfs.BulkFileListener
import com.intellij.openapi.vfs.newvfs.events.VFileEvent
import com.intellij.openapi.wm.ToolWindowManager
import com.intellij.psi.PsiManager
import com.intellij.util.concurrency.AppExecutorUtil
import org.stellaops.core.ConnectionState
import org.stellaops.core.HealthNotification
import org.stellaops.core.HttpTransport
import org.stellaops.core.StaticBearer
import org.stellaops.core.StellaOpsCore
import org.stellaops.core.StellaProjectFile
import org.stellaops.core.ViewState
import org.stellaops.intellij.auth.PasswordSafeTokenStore
import org.stellaops.intellij.settings.StellaOpsSettings
import java.nio.file.Path
import java.util.concurrent.CopyOnWriteArrayList

/**
 * Entry point of the plugin: one per project. Builds a [StellaOpsCore] from the settings (and the `server:`,
 * `project:` and `integrations:` of the project's stella.yaml), forwards its [ViewState] to the UI on the EDT,
 * and shows its notices and health notifications. All behaviour lives in the core module.
 */
@Service(Service.Level.PROJECT)
class StellaOpsPlugin(private val project: Project) : Disposable {
    @Volatile var core: StellaOpsCore? = null
        private set
    private val listeners = CopyOnWriteArrayList<(ViewState) -> Unit>()
    @Volatile private var shownMarks: Pair<Any?, Any?>? = null
    private val forward: (ViewState) -> Unit = { s ->
        ApplicationManager.getApplication().invokeLater({
            if (project.isDisposed) return@invokeLater
            listeners.forEach { it(s) }
            // The promote gutter icons of stella.yaml follow the Orchestrator's data.
            val marks = s.environments?.value to s.releases?.value
            if (marks != shownMarks) {
                shownMarks = marks
                val psi = PsiManager.getInstance(project)
                FileEditorManager.getInstance(project).openFiles.filter { it.name == "stella.yaml" }
                    .mapNotNull { psi.findFile(it) }.forEach { DaemonCodeAnalyzer.getInstance(project).restart(it) }
            }
        }, ModalityState.any())
    }

    init {
        // Edits of stella.yaml's `integrations:` change which integrations notify, without a restart of the core.
        project.messageBus.connect(this).subscribe(VirtualFileManager.VFS_CHANGES, object : BulkFileListener {
            override fun after(events: List<VFileEvent>) {
                if (events.none { it.file?.name == "stella.yaml" }) return
                ApplicationManager.getApplication().executeOnPooledThread {
                    if (!project.isDisposed) core?.setReferencedIntegrations(projectFile()?.integrations.orEmpty())
                }
            }
        })
    }

    val state: ViewState get() = core?.state ?: ViewState(ConnectionState.SIGNED_OUT, message = "Configure the Stella Ops server in Settings | Tools | Stella Ops")

    /** Called from [Startup] and after the settings change. Runs off the EDT (PasswordSafe and file access). */
    fun reload() {
        ApplicationManager.getApplication().executeOnPooledThread {
            core?.let { it.removeListener(forward); it.dispose() }
            val file = projectFile()
            val settings = StellaOpsSettings.getInstance().toCore(file?.server, file?.project, file?.integrations.orEmpty())
            core = settings?.let {
                StellaOpsCore(
                    settings = it,
                    tokenStore = PasswordSafeTokenStore(),
                    cacheFile = Path.of(PathManager.getSystemPath(), "stella-ops", "${project.locationHash}.json"),
                    executor = AppExecutorUtil.getAppScheduledExecutorService(),
                    notify = ::notify,
                    integrationsBearer = PasswordSafeTokenStore.loadDaemonKey()?.let(::StaticBearer),
                    onHealthNotice = ::healthNotice,
                )
            }
            core?.let { it.addListener(forward); it.start() } ?: forward(state)
        }
    }

    fun addListener(parent: Disposable, listener: (ViewState) -> Unit) {
        listeners += listener
        Disposer.register(parent) { listeners -= listener }
        listener(state)
    }

    fun projectFile(): StellaProjectFile? {
        val file = ReadAction.compute<com.intellij.openapi.vfs.VirtualFile?, RuntimeException> {
            project.guessProjectDir()?.findChild("stella.yaml")
        } ?: return null
        return StellaProjectFile.parse(VfsUtilCore.loadText(file))
    }

    fun notify(message: String, type: NotificationType = NotificationType.INFORMATION) {
        NotificationGroupManager.getInstance().getNotificationGroup("Stella Ops")
            .createNotification(message, type)
            .notify(project)
    }

    /**
     * One notification per integration per status change into unhealthy/error, one per incident (the core
     * decides; this only shows them), with "Run health check" and "Open in Swagger UI".
     */
    private fun healthNotice(n: HealthNotification) {
        val group = NotificationGroupManager.getInstance().getNotificationGroup("Stella Ops")
        val swagger = NotificationAction.createSimpleExpiring("Open in Swagger UI") {
            core?.settings?.integrationsUrl?.let { BrowserUtil.browse(it.trimEnd('/') + "/docs") }
        }
        val notification = when (n) {
            is HealthNotification.IntegrationFailing -> {
                val detail = n.message?.takeIf { it != n.reason }?.let { " — $it" } ?: ""
                group.createNotification(
                    "Stella Ops: ${n.name} is ${if (n.status == "error") "in error" else n.status}${n.reason?.let { ": $it" } ?: ""}$detail",
                    NotificationType.WARNING,
                ).addAction(NotificationAction.createSimpleExpiring("Run health check") { runHealthCheck(n.integrationId, n.name) })
            }
            is HealthNotification.Incident -> group.createNotification(
                "Stella Ops: incident — ${n.title?.let { "$it: " } ?: ""}${n.names.joinToString(", ")} affected${n.reason?.let { " ($it)" } ?: ""}.",
                NotificationType.WARNING,
            ).addAction(NotificationAction.createSimpleExpiring("Show integrations") {
                ToolWindowManager.getInstance(project).getToolWindow("Stella Ops")?.show()
            })
        }
        notification.addAction(swagger).notify(project)
    }

    fun runHealthCheck(integrationId: String, name: String) {
        val c = core ?: return
        c.healthCheck(integrationId).whenComplete { r, err ->
            when {
                err != null -> notify("Health check of $name failed: ${HttpTransport.unwrap(err).message}", NotificationType.WARNING)
                !r.supported -> notify("Health checks are not available on this daemon: ${r.message}")
                else -> notify("$name: ${r.status.wire}${r.reason?.let { " ($it)" } ?: ""}${r.latencyMs?.let { " in $it ms" } ?: ""}")
            }
        }
    }

    override fun dispose() {
        core?.let { it.removeListener(forward); it.dispose() }
        listeners.clear()
    }

    companion object {
        fun getInstance(project: Project): StellaOpsPlugin = project.service()
    }

    /** Starts the periodic refresh when a project opens. */
    class Startup : ProjectActivity {
        override suspend fun execute(project: Project) {
            getInstance(project).reload()
        }
    }
}
