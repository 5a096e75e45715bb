package org.stellaops.intellij.actions

import com.intellij.ide.BrowserUtil
import com.intellij.notification.NotificationType
import com.intellij.openapi.actionSystem.ActionUpdateThread
import com.intellij.openapi.actionSystem.AnAction
import com.intellij.openapi.actionSystem.AnActionEvent
import com.intellij.openapi.actionSystem.CommonDataKeys
import com.intellij.openapi.application.ApplicationManager
import com.intellij.openapi.project.DumbAware
import java.util.concurrent.CompletableFuture
import org.stellaops.core.ConnectionState
import org.stellaops.core.HttpTransport
import org.stellaops.core.StellaProjectFile
import org.stellaops.intellij.StellaOpsPlugin

private fun AnActionEvent.plugin(): StellaOpsPlugin? = project?.let(StellaOpsPlugin::getInstance)

private fun errorText(t: Throwable): String = HttpTransport.unwrap(t).message ?: t.toString()

/** StellaOps.Refresh: reload all lists now (the periodic refresh continues afterwards). */
class RefreshAction : AnAction(), DumbAware {
    override fun getActionUpdateThread() = ActionUpdateThread.BGT
    override fun update(e: AnActionEvent) { e.presentation.isEnabled = e.plugin()?.core != null }
    override fun actionPerformed(e: AnActionEvent) { e.plugin()?.core?.refreshNow() }
}

/**
 * StellaOps.Promote: promote a release to an environment. In stella.yaml the environment under the caret is
 * pre-selected. Asks for a reason and a change ticket (the Authority requires both for `orch:operate`).
 */
class PromoteAction : AnAction(), DumbAware {
    override fun getActionUpdateThread() = ActionUpdateThread.BGT

    override fun update(e: AnActionEvent) {
        val s = e.plugin()?.state
        e.presentation.isEnabled = s?.connection == ConnectionState.CONNECTED && !s.releases?.value.isNullOrEmpty()
    }

    override fun actionPerformed(e: AnActionEvent) {
        val project = e.project ?: return
        val plugin = StellaOpsPlugin.getInstance(project)
        val core = plugin.core ?: return
        val state = core.state
        val releases = state.releases?.value.orEmpty().filter { it.status == null || it.status == "ready" }
        val envs = state.environments?.value.orEmpty()
        if (releases.isEmpty() || envs.isEmpty()) return

        // Pre-select from stella.yaml: the environment under the caret, else promotion.to.
        val editor = e.getData(CommonDataKeys.EDITOR)
        val file = e.getData(CommonDataKeys.PSI_FILE)?.takeIf { it.name == "stella.yaml" }
        val yaml = file?.let { StellaProjectFile.parse(it.text) }
        val preferredEnv = editor?.let { yaml?.environmentAt(it.caretModel.offset)?.name } ?: yaml?.promotionTo

        val dialog = PromoteDialog(project, releases, envs, preferredEnv)
        if (!dialog.showAndGet()) return
        val release = dialog.release ?: return
        val env = dialog.environment ?: return
        val reason = dialog.reason.trim()
        val ticket = dialog.ticket.trim()

        core.promote(release.id, env.id, reason, ticket).whenComplete { p, err ->
            if (err == null) plugin.notify("Promotion ${p.id} of ${p.releaseName} to ${p.targetEnvironmentName}: ${p.status}")
            else plugin.notify("Promotion failed: ${errorText(err)}", NotificationType.ERROR)
        }
    }
}

/** Sign in with the device flow: shows the code, opens the verification page, waits in the background. */
class SignInAction : AnAction(), DumbAware {
    override fun getActionUpdateThread() = ActionUpdateThread.BGT
    override fun update(e: AnActionEvent) { e.presentation.isEnabled = e.plugin()?.core != null }

    override fun actionPerformed(e: AnActionEvent) {
        val plugin = e.plugin() ?: return
        val core = plugin.core ?: return
        core.signInWithDeviceCode({ d ->
            plugin.notify("Enter code ${d.userCode} at ${d.verificationUri} to sign in to Stella Ops.")
            ApplicationManager.getApplication().invokeLater { BrowserUtil.browse(d.verificationUriComplete ?: d.verificationUri) }
        }).whenComplete { _, err ->
            if (err == null) plugin.notify("Signed in to Stella Ops.")
            else plugin.notify("Sign-in failed: ${errorText(err)}", NotificationType.WARNING)
        }
    }
}

class SignOutAction : AnAction(), DumbAware {
    override fun getActionUpdateThread() = ActionUpdateThread.BGT
    override fun update(e: AnActionEvent) { e.presentation.isEnabled = e.plugin()?.let { it.core != null && it.state.connection != ConnectionState.SIGNED_OUT } == true }
    override fun actionPerformed(e: AnActionEvent) { e.plugin()?.core?.signOut() }
}

/** Runs a health check on every integration shown (the daemon answers 501 until its health engine is available). */
class CheckIntegrationsAction : AnAction(), DumbAware {
    override fun getActionUpdateThread() = ActionUpdateThread.BGT
    override fun update(e: AnActionEvent) { e.presentation.isEnabled = e.plugin()?.core?.integrationsClient != null }
    override fun actionPerformed(e: AnActionEvent) {
        val plugin = e.plugin() ?: return
        val core = plugin.core ?: return
        val items = core.state.integrations?.value.orEmpty()
        val checks = items.map { i -> core.healthCheck(i.id).handle { r, err -> Triple(i, r, err) } }
        // One notice for the whole run, not one per integration.
        CompletableFuture.allOf(*checks.toTypedArray()).thenRun {
            val results = checks.map { it.join() }
            val unsupported = results.firstOrNull { it.second?.supported == false }
            val failed = results.filter { it.third != null }
            when {
                unsupported != null -> plugin.notify("Health checks are not available on this daemon: ${unsupported.second?.message}")
                failed.isNotEmpty() -> plugin.notify("${failed.size} of ${results.size} health checks failed: ${errorText(failed.first().third!!)}", NotificationType.WARNING)
                else -> plugin.notify("Checked ${results.size} integrations.")
            }
        }
    }
}
