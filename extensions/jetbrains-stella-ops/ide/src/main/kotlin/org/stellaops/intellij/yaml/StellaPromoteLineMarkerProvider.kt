package org.stellaops.intellij.yaml

import com.intellij.codeInsight.daemon.GutterIconNavigationHandler
import com.intellij.codeInsight.daemon.LineMarkerInfo
import com.intellij.codeInsight.daemon.LineMarkerProviderDescriptor
import com.intellij.icons.AllIcons
import com.intellij.notification.NotificationType
import com.intellij.openapi.actionSystem.ActionManager
import com.intellij.openapi.actionSystem.ActionPlaces
import com.intellij.openapi.editor.markup.GutterIconRenderer
import com.intellij.openapi.project.Project
import com.intellij.openapi.util.text.StringUtil
import com.intellij.openapi.wm.ToolWindowManager
import com.intellij.psi.PsiElement
import org.stellaops.core.HttpTransport
import org.stellaops.core.MarkAction
import org.stellaops.core.PromoteMark
import org.stellaops.core.PromoteMarks
import org.stellaops.core.StellaProjectFile
import org.stellaops.intellij.StellaOpsPlugin
import org.stellaops.intellij.actions.PromoteDialog
import java.awt.event.MouseEvent
import javax.swing.Icon

/**
 * The promote action of `stella.yaml` as gutter icons, the counterpart of the VS Code CodeLens: a run icon on
 * an environment ("Promote v1.4.2 to prod…") and on `promotion:` ("Promote stage → prod (v1.4.2)…"), an
 * information icon where there is only news ("deployed v1.4.2 to stage", the latest release). Which marks, their
 * texts and targets come from the core ([PromoteMarks]); this only places and runs them. Slow markers: computed
 * in the background, re-run by [StellaOpsPlugin] when the Orchestrator's data changes.
 */
class StellaPromoteLineMarkerProvider : LineMarkerProviderDescriptor() {
    override fun getName(): String = "Stella Ops promote actions"
    override fun getIcon(): Icon = AllIcons.Actions.Execute

    override fun getLineMarkerInfo(element: PsiElement): LineMarkerInfo<*>? = null

    override fun collectSlowLineMarkers(elements: MutableList<out PsiElement>, result: MutableCollection<in LineMarkerInfo<*>>) {
        val file = elements.firstOrNull()?.containingFile ?: return
        if (file.name != "stella.yaml") return
        val projectFile = StellaProjectFile.parse(file.text) ?: return
        val marks = PromoteMarks.compute(projectFile, StellaOpsPlugin.getInstance(file.project).state).groupBy { it.offset }
        if (marks.isEmpty()) return
        for (element in elements) {
            if (element.firstChild != null) continue // leaves only
            val here = marks[element.textRange.startOffset] ?: continue
            val main = here.firstOrNull { it.action == MarkAction.PROMOTE } ?: here.first()
            val tooltip = "<html>" + here.joinToString("<br>") { StringUtil.escapeXmlEntities(it.title) } + "</html>"
            val icon = if (main.action == MarkAction.PROMOTE) AllIcons.Actions.Execute else AllIcons.General.Information
            result += LineMarkerInfo(
                element, element.textRange, icon, { tooltip },
                GutterIconNavigationHandler<PsiElement> { e, elt -> run(elt.project, main, e) },
                GutterIconRenderer.Alignment.LEFT, { main.title },
            )
        }
    }

    private fun run(project: Project, mark: PromoteMark, e: MouseEvent) {
        val plugin = StellaOpsPlugin.getInstance(project)
        when (mark.action) {
            MarkAction.PROMOTE -> promote(project, plugin, mark)
            MarkAction.REFRESH -> plugin.core?.refreshNow()
            MarkAction.SHOW_TOOL_WINDOW -> ToolWindowManager.getInstance(project).getToolWindow("Stella Ops")?.show()
            MarkAction.SIGN_IN -> ActionManager.getInstance().getAction("StellaOps.SignIn")?.let {
                ActionManager.getInstance().tryToExecute(it, e, null, ActionPlaces.EDITOR_GUTTER, true)
            }
        }
    }

    /** The Promote dialog with the mark's release and environment chosen; reason and ticket asked; the core promotes. */
    private fun promote(project: Project, plugin: StellaOpsPlugin, mark: PromoteMark) {
        val core = plugin.core ?: return
        val target = mark.target ?: return
        val state = core.state
        val known = state.releases?.value.orEmpty()
        val releases = known.filter { it.status == null || it.status == "ready" || it.id == target.releaseId }
        val envs = state.environments?.value.orEmpty()
        if (releases.none { it.id == target.releaseId } || envs.isEmpty()) {
            plugin.notify("Release ${target.releaseName} is not in the list of releases; refresh and try again.", NotificationType.WARNING)
            return
        }
        val dialog = PromoteDialog(project, releases, envs, target.targetEnvironmentId, target.releaseId)
        if (!dialog.showAndGet()) return
        val release = dialog.release ?: return
        val env = dialog.environment ?: return
        core.promote(release.id, env.id, dialog.reason.trim(), dialog.ticket.trim()).whenComplete { p, err ->
            if (err == null) plugin.notify("Promotion ${p.id} of ${p.releaseName} to ${p.targetEnvironmentName}: ${p.status}")
            else plugin.notify("Promotion failed: ${HttpTransport.unwrap(err).message}", NotificationType.ERROR)
        }
    }
}
