"""Swagger UI in a real headless Chromium, as a person uses it.

Opens the daemon's Swagger UI (`/docs`), clicks "Authorize", enters an API key, closes the
dialog, opens `GET /api/v1/integrations`, clicks "Try it out" then "Execute", and asserts that
the page shows the 200 and the integration the run registered beforehand; then that an
unauthorised request made the same way, after "Logout", shows a 401. With `--expect-scopes`
it also asserts that each operation tried states the scope it requires (`integrations:read`
for listing, `integrations:write` for registering). A screenshot of the executed request is
saved to the path given (target/swagger-ui.png by default).

Driven with Selenium and Debian's chromium and chromium-driver (installed by `run` beside this
file), never a downloaded browser.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

WAIT_SECONDS = 30
T = TypeVar("T")


class Browser:
    def __init__(self, chromium: str, driver: str, profile: str) -> None:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for argument in (
            "--headless=new",
            "--no-sandbox",  # CI runs as root
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1400,1800",
            "--no-first-run",
            # The machine has no way out: no background connections, updates or sync to try.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(argument)
        self.driver: WebDriver = webdriver.Chrome(service=Service(executable_path=driver), options=options)

    def wait(self, condition: Callable[[WebDriver], T | bool], what: str) -> T:
        try:
            return WebDriverWait(self.driver, WAIT_SECONDS).until(condition)  # type: ignore[arg-type,return-value]
        except TimeoutException:
            raise AssertionError(f"timed out waiting for {what}") from None

    def find(self, css: str, root: WebElement | None = None) -> WebElement:
        scope = root if root is not None else self.driver
        return self.wait(lambda _: _visible(scope.find_elements(By.CSS_SELECTOR, css)), css)

    def click(self, css: str, root: WebElement | None = None) -> WebElement:
        element = self.find(css, root)
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
        self.wait(lambda _: element.is_enabled(), f"{css} to be enabled")
        element.click()
        return element


def _visible(elements: list[WebElement]) -> WebElement | bool:
    for element in elements:
        if element.is_displayed():
            return element
    return False


def authorize(browser: Browser, key: str) -> None:
    browser.click(".auth-wrapper .btn.authorize")
    modal = browser.find(".dialog-ux .modal-ux")
    # The bearer scheme's section: an API key is entered as the bearer value.
    bearer = None
    for section in modal.find_elements(By.CSS_SELECTOR, ".auth-container"):
        if "BearerAuth" in section.text:
            bearer = section
    assert bearer is not None, f"no BearerAuth in the Authorize dialog: {modal.text!r}"
    field = browser.find("input", bearer)
    field.clear()
    field.send_keys(key)
    browser.click("button.modal-btn.authorize", bearer)
    browser.wait(lambda _: "Logout" in bearer.text, "the bearer scheme to be authorised")
    browser.click(".dialog-ux .modal-ux button.btn-done")
    browser.wait(lambda d: not d.find_elements(By.CSS_SELECTOR, ".dialog-ux .modal-ux"), "the dialog to close")


def logout(browser: Browser) -> None:
    browser.click(".auth-wrapper .btn.authorize")
    modal = browser.find(".dialog-ux .modal-ux")
    for section in modal.find_elements(By.CSS_SELECTOR, ".auth-container"):
        if "BearerAuth" in section.text:
            for button in section.find_elements(By.CSS_SELECTOR, "button"):
                if button.text.strip() == "Logout":
                    button.click()
    browser.click(".dialog-ux .modal-ux button.btn-done")


def operation(browser: Browser, operation_id: str) -> WebElement:
    """The operation's block, expanded."""
    block = browser.find(f"[id$='-{operation_id}'].opblock")
    if "is-open" not in (block.get_attribute("class") or ""):
        browser.click(".opblock-summary", block)
        browser.wait(lambda _: "is-open" in (block.get_attribute("class") or ""), f"{operation_id} to open")
    return block


def execute(browser: Browser, block: WebElement, expected_status: str) -> str:
    """Clicks "Try it out" (once) and "Execute"; the response body shown for the status."""
    if not block.find_elements(By.CSS_SELECTOR, "button.execute"):
        browser.click("button.try-out__btn", block)
    # Any earlier response of this block is cleared so the wait sees the new one.
    for clear in block.find_elements(By.CSS_SELECTOR, "button.btn-clear"):
        if clear.is_displayed():
            clear.click()
    browser.click("button.execute", block)
    status = browser.find(".live-responses-table .response .response-col_status", block)
    browser.wait(lambda _: status.text.strip() != "", "a response status")
    shown = status.text.strip().split()[0]
    assert shown == expected_status, f"the page shows {shown}, expected {expected_status}: {status.text!r}"
    body = browser.find(".live-responses-table .response-col_description .highlight-code", block)
    browser.wait(lambda _: body.text.strip() != "", "the response body")
    return body.text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("screenshot", nargs="?", default="target/swagger-ui.png")
    parser.add_argument("--url", required=True, help="the daemon's base URL")
    parser.add_argument("--integration", required=True, help="the name of an integration the key can list")
    parser.add_argument("--expect-scopes", action="store_true", help="assert each operation states its scope")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium"))
    parser.add_argument("--chromedriver", default=os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver"))
    args = parser.parse_args()
    key = os.environ["STELLA_KEY"]

    profile = tempfile.TemporaryDirectory(prefix="swagger-ui-chromium-")
    browser = Browser(args.chromium, args.chromedriver, profile.name)
    passed = 0
    try:

        def load() -> None:
            browser.driver.get(f"{args.url}/docs")
            title = browser.find(".swagger-ui .info .title").text
            assert "StellaOps Integrations" in title, f"title {title!r}"

        def authorise() -> None:
            authorize(browser, key)

        def list_integrations() -> None:
            block = operation(browser, "integration_list")
            body = execute(browser, block, "200")
            assert args.integration in body, f"the listed body lacks {args.integration!r}: {body[:500]!r}"
            # The request Swagger UI made carried the key as a bearer token.
            curl = browser.find(".curl-command", block).text
            assert "Authorization: Bearer" in curl, f"the request sent no bearer token: {curl!r}"
            browser.driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", block)
            Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
            browser.driver.save_screenshot(args.screenshot)

        def scopes() -> None:
            read = operation(browser, "integration_list").text
            assert "integrations:read" in read, "GET /api/v1/integrations does not state integrations:read"
            write = operation(browser, "integration_create").text
            assert "integrations:write" in write, "POST /api/v1/integrations does not state integrations:write"

        def unauthorised() -> None:
            logout(browser)
            block = operation(browser, "integration_list")
            execute(browser, block, "401")

        steps: list[tuple[str, Callable[[], None]]] = [
            ("load /docs", load),
            ("Authorize with an API key", authorise),
            ("Try it out / Execute GET /api/v1/integrations: 200", list_integrations),
        ]
        if args.expect_scopes:
            steps.append(("operations state their scopes", scopes))
        steps.append(("after Logout, Execute: 401", unauthorised))
        for name, step in steps:
            try:
                step()
            except Exception as error:  # noqa: BLE001 - report the step and stop
                failed = Path(args.screenshot).with_suffix(".failed.png")
                browser.driver.save_screenshot(str(failed))
                print(f"swagger ui: {name}: FAILED: {type(error).__name__}: {error} (screenshot {failed})")
                print(f"{passed} passed, 1 failed, {len(steps) - passed - 1} skipped")
                return 1
            passed += 1
            print(f"swagger ui: {name}: ok")
        if not args.expect_scopes:
            print("swagger ui: the scope check is off (--expect-scopes turns it on)")
        print(f"swagger ui: screenshot {args.screenshot}")
        print(f"{passed} passed, 0 failed")
        return 0
    finally:
        browser.driver.quit()
        profile.cleanup()


if __name__ == "__main__":
    sys.exit(main())
