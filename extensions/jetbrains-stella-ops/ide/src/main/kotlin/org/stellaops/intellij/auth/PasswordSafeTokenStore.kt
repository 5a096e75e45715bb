package org.stellaops.intellij.auth

import com.intellij.credentialStore.CredentialAttributes
import com.intellij.credentialStore.Credentials
import com.intellij.credentialStore.generateServiceName
import com.intellij.ide.passwordSafe.PasswordSafe
import org.stellaops.core.TokenSet
import org.stellaops.core.TokenStore

/** Tokens in the IDE's PasswordSafe (OS keychain / KeePass), never in settings files. */
class PasswordSafeTokenStore : TokenStore {
    private fun attributes(key: String) = CredentialAttributes(generateServiceName("Stella Ops", "tokens:$key"))

    override fun load(key: String): TokenSet? =
        PasswordSafe.instance.get(attributes(key))?.getPasswordAsString()?.let { runCatching { TokenSet.fromJson(it) }.getOrNull() }

    override fun save(key: String, tokens: TokenSet) {
        PasswordSafe.instance.set(attributes(key), Credentials(key, tokens.toJson()))
    }

    override fun clear(key: String) {
        PasswordSafe.instance.set(attributes(key), null)
    }

    companion object {
        private val daemonKey = CredentialAttributes(generateServiceName("Stella Ops", "integrations-api-key"))

        fun loadDaemonKey(): String? = PasswordSafe.instance.get(daemonKey)?.getPasswordAsString()?.takeIf { it.isNotBlank() }

        fun saveDaemonKey(value: String?) {
            PasswordSafe.instance.set(daemonKey, value?.let { Credentials("api-key", it) })
        }
    }
}
