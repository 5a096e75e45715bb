package org.stellaops.intellij

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
import com.intellij.openapi.util.Disposer
import com.intellij.openapi.vfs.VfsUtilCore
import com.intellij.util.concurrency.AppExecutorUtil
import org.stellaops.core.ConnectionState
import org.stellaops.core.StaticBearer
import org.stellaops.core.StellaOpsCore
import org.stellaops.core.StellaProjectFile
import org.stellaops.core.ViewState
import org.stellaops.intellij.auth.PasswordSafeTokenStore
import org.stellaops.intellij.settings.StellaOpsSettings
import java.nio.file.Path
import java.util.concurrent.CopyOnWriteArrayList

/**
 * Entry point of the plugin: one per project. Builds a [StellaOpsCore] from the settings (and the `server:`
 * of the project's stella.yaml), forwards its [ViewState] to the UI on the EDT, and shows its notices.
 * All behaviour lives in the core module.
 */
@Service(Service.Level.PROJECT)
class StellaOpsPlugin(private val project: Project) : Disposable {
    @Volatile var core: StellaOpsCore? = null
        private set
    private val listeners = CopyOnWriteArrayList<(ViewState) -> Unit>()
    private val forward: (ViewState) -> Unit = { s ->
        ApplicationManager.getApplication().invokeLater({ if (!project.isDisposed) listeners.forEach { it(s) } }, ModalityState.any())
    }

    val state: ViewState get() = core?.state ?: ViewState(ConnectionState.SIGNED_OUT, message = "Configure the Stella Ops server in Settings | Tools | Stella Ops")

    /** Called from [Startup] and after the settings change. Runs off the EDT (PasswordSafe and file access). */
    fun reload() {
        ApplicationManager.getApplication().executeOnPooledThread {
            core?.let { it.removeListener(forward); it.dispose() }
            val file = projectFile()
            val settings = StellaOpsSettings.getInstance().toCore(file?.server, file?.project)
            core = settings?.let {
                StellaOpsCore(
                    settings = it,
                    tokenStore = PasswordSafeTokenStore(),
                    cacheFile = Path.of(PathManager.getSystemPath(), "stella-ops", "${project.locationHash}.json"),
                    executor = AppExecutorUtil.getAppScheduledExecutorService(),
                    notify = ::notify,
                    integrationsBearer = PasswordSafeTokenStore.loadDaemonKey()?.let(::StaticBearer),
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
