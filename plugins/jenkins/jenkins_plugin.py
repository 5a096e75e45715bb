#!/usr/bin/env python3
"""StellaOps Integrations reference plugin: Jenkins.

Speaks protocol 1 of docs/plugins.md: JSON-RPC 2.0, one JSON message per line, requests on
stdin, responses on stdout, logs on stderr. Standard library only.

Health: GET {baseUrl}/api/json with HTTP basic auth (config.username + the per-call credential,
a Jenkins API token). 401 -> auth_failed, 403 -> forbidden, 429 -> rate_limited, 5xx ->
provider_degraded, timeout or connection failure -> network. list_resources lists the jobs.
"""

import base64
import json
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

PROTOCOL_VERSIONS = [1]
CAPABILITIES = ["health_check", "list_resources"]
DEFAULT_TIMEOUT = 5
MAX_BODY = 8 * 1024 * 1024

# JSON-RPC error codes (docs/plugins.md, "Errors").
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
PROVIDER_ERROR = -32000

_out_lock = threading.Lock()


def log(message):
    print(f"jenkins: {message}", file=sys.stderr, flush=True)


def send(message):
    line = json.dumps(message, separators=(",", ":"))
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class RpcError(Exception):
    def __init__(self, code, message, data=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class ProviderError(Exception):
    def __init__(self, reason, message, retry_after=None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


def check_config(config):
    """The field errors of a configuration (an empty list when it is valid)."""
    if not isinstance(config, dict):
        return [{"field": "config", "message": "must be an object"}]
    errors = []
    for key in config:
        if key not in ("baseUrl", "username", "timeoutSeconds"):
            errors.append({"field": f"config.{key}", "message": "unknown field"})
    base = config.get("baseUrl")
    if not isinstance(base, str):
        errors.append({"field": "config.baseUrl", "message": "is required and must be a string"})
    else:
        url = urllib.parse.urlsplit(base)
        if url.scheme not in ("http", "https") or not url.hostname:
            errors.append({"field": "config.baseUrl",
                           "message": "must be an http or https URL with a host"})
        elif url.username or url.password:
            errors.append({"field": "config.baseUrl",
                           "message": "must not carry user info; use username and the credential"})
    if "username" in config and not isinstance(config["username"], str):
        errors.append({"field": "config.username", "message": "must be a string"})
    timeout = config.get("timeoutSeconds", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= 60:
        errors.append({"field": "config.timeoutSeconds", "message": "must be an integer from 1 to 60"})
    return errors


def get_json(params, path):
    """GET {baseUrl}{path} with the call's credential: the decoded JSON object and X-Jenkins."""
    config = params.get("config")
    errors = check_config(config)
    if errors:
        raise RpcError(INVALID_PARAMS, f"{errors[0]['field']}: {errors[0]['message']}")
    url = config["baseUrl"].rstrip("/") + path
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    credential = params.get("credential")
    if credential is not None:
        if not isinstance(credential, dict) or not isinstance(credential.get("secret"), str):
            raise RpcError(INVALID_PARAMS, "credential must be an object with a string secret")
        user = config.get("username", "")
        token = f"{user}:{credential['secret']}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
    timeout = config.get("timeoutSeconds", DEFAULT_TIMEOUT)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_BODY + 1)
            version = response.headers.get("X-Jenkins")
    except urllib.error.HTTPError as e:
        status = e.code
        if status == 401:
            raise ProviderError("auth_failed", "Jenkins refused the credentials (HTTP 401)")
        if status == 403:
            raise ProviderError("forbidden", "the Jenkins user lacks the Overall/Read permission (HTTP 403)")
        if status == 429:
            retry = e.headers.get("Retry-After", "")
            raise ProviderError("rate_limited", "Jenkins asked to retry later (HTTP 429)",
                                int(retry) if retry.isdigit() else 60)
        if status >= 500:
            raise ProviderError("provider_degraded", f"Jenkins answered HTTP {status}")
        raise ProviderError("bad_response", f"Jenkins answered HTTP {status}")
    except (urllib.error.URLError, OSError) as e:
        # Timeouts, refused connections and DNS failures; the text names no secret.
        reason = getattr(e, "reason", e)
        raise ProviderError("network", f"could not reach Jenkins: {reason}")
    if len(body) > MAX_BODY:
        raise ProviderError("bad_response", "Jenkins answered with a body over 8 MiB")
    try:
        data = json.loads(body)
    except ValueError:
        raise ProviderError("bad_response", "Jenkins answered with something that is not JSON")
    if not isinstance(data, dict):
        raise ProviderError("bad_response", "Jenkins answered with JSON that is not an object")
    return data, version


def check_health(params):
    try:
        data, version = get_json(params, "/api/json")
    except ProviderError as e:
        result = {"health": "unhealthy", "reason": e.reason, "message": e.message}
        if e.retry_after is not None:
            result["retryAfterSeconds"] = e.retry_after
        return result
    message = f"Jenkins {version}" if version else "Jenkins answered"
    if data.get("quietingDown"):
        return {"health": "degraded", "reason": "provider_degraded",
                "message": message + ", quieting down (no new builds start)"}
    return {"health": "healthy", "message": message}


def list_resources(params):
    try:
        data, _ = get_json(params, "/api/json?tree=jobs%5Bname,url%5D")
    except ProviderError as e:
        raise RpcError(PROVIDER_ERROR, e.message, {"reason": e.reason})
    resources = []
    for job in data.get("jobs") or []:
        if isinstance(job, dict) and isinstance(job.get("name"), str):
            url = job.get("url")
            resources.append({"id": job["name"], "name": job["name"], "kind": "job",
                              "url": url if isinstance(url, str) else None})
    return {"resources": resources}


def initialize(params):
    offered = params.get("protocolVersions")
    if not isinstance(offered, list):
        raise RpcError(INVALID_PARAMS, "protocolVersions must be a list")
    common = [v for v in PROTOCOL_VERSIONS if v in offered]
    if not common:
        raise RpcError(INVALID_PARAMS, f"no common protocol version; this plugin speaks {PROTOCOL_VERSIONS}")
    return {"protocolVersion": max(common), "capabilities": CAPABILITIES}


def validate_config(params):
    errors = check_config(params.get("config"))
    return {"valid": not errors, "errors": errors}


METHODS = {
    "initialize": initialize,
    "validate_config": validate_config,
    "test_connection": check_health,
    "check_health": check_health,
    "list_resources": list_resources,
}


def handle(message):
    request_id = message.get("id")
    try:
        method = METHODS.get(message.get("method"))
        if method is None:
            raise RpcError(METHOD_NOT_FOUND, f"unknown method {message.get('method')!r}")
        params = message.get("params")
        if not isinstance(params, dict):
            raise RpcError(INVALID_PARAMS, "params must be an object")
        send({"jsonrpc": "2.0", "id": request_id, "result": method(params)})
    except RpcError as e:
        error = {"code": e.code, "message": e.message}
        if e.data is not None:
            error["data"] = e.data
        send({"jsonrpc": "2.0", "id": request_id, "error": error})
    except Exception as e:  # a bug here must not take the other calls down
        log(f"internal error: {type(e).__name__}")
        send({"jsonrpc": "2.0", "id": request_id,
              "error": {"code": INTERNAL_ERROR, "message": "internal plugin error"}})


def main():
    log("started")
    workers = []
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            message = json.loads(line)
        except ValueError:
            send({"jsonrpc": "2.0", "id": None, "error": {"code": PARSE_ERROR, "message": "parse error"}})
            continue
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0" or "id" not in message:
            send({"jsonrpc": "2.0", "id": message.get("id") if isinstance(message, dict) else None,
                  "error": {"code": INVALID_REQUEST, "message": "not a JSON-RPC 2.0 request"}})
            continue
        # Calls run concurrently; each answer carries its request's id, in any order.
        worker = threading.Thread(target=handle, args=(message,), daemon=True)
        worker.start()
        workers = [w for w in workers if w.is_alive()] + [worker]
    # stdin closed: the daemon is stopping this process. Finish what is in flight, briefly.
    for worker in workers:
        worker.join(timeout=2)
    log("stdin closed, exiting")


if __name__ == "__main__":
    main()
