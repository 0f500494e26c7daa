"""The web pages in a real headless browser (Debian's chromium, driven by selenium through chromedriver),
served by the real gateway in front of the real server. Screenshots go to the test's tmp folder."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable, TypeVar

import cv2
import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from facewire.process import GatewayProcess, ServerProcess

from .conftest import REPO_PROBES

WAIT = 120.0
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
CLIP_FRAMES = range(90, 150)
"""Frames of the shared clip where Lin-Manuel Miranda faces the camera (90-210 all name him)."""

T = TypeVar("T")

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="needs Debian's chromium and chromium-driver (scripts/setup.sh --dev)")


@pytest.fixture(scope="module")
def gallery(shared_faces, tmp_path_factory) -> Path:
    """The shared gallery, and Lin-Manuel Miranda's portrait for the live page."""
    target = tmp_path_factory.mktemp("browser") / "known"
    shutil.copytree(shared_faces / "known", target)
    shutil.copy(shared_faces / "video" / "lin-manuel-miranda.png", target / "lin-manuel-miranda.png")
    return target


@pytest.fixture(scope="module")
def gateway(gallery, tmp_path_factory):
    logs = tmp_path_factory.mktemp("browser-logs")
    with ServerProcess(gallery, logs / "server.log", "--workers", "2", "--db", f"sqlite:///{logs / 'cache.db'}") as server, \
            GatewayProcess(server.address, logs / "gateway.log") as gateway:
        yield gateway


@pytest.fixture(scope="module")
def fake_camera(shared_faces, tmp_path_factory) -> Path:
    """A few seconds of the shared clip as a Y4M file, which chromium plays as its camera."""
    path = tmp_path_factory.mktemp("camera") / "clip.y4m"
    capture = cv2.VideoCapture(str(shared_faces / "video" / "short_hamilton_clip.mp4"))
    frames = []
    for index in range(CLIP_FRAMES.stop):
        ok, frame = capture.read()
        assert ok, f"the clip has no frame {index}"
        if index in CLIP_FRAMES:
            frames.append(frame)
    capture.release()
    height, width = frames[0].shape[:2]
    with open(path, "wb") as y4m:
        y4m.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            y4m.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


@pytest.fixture(scope="module")
def browser(fake_camera):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                     "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                     f"--use-file-for-fake-video-capture={fake_camera}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


def until(check: Callable[[], T], what: str, within: float = WAIT) -> T:
    """The first truthy value of `check()`, asked until `within` seconds pass (then AssertionError)."""
    deadline = time.monotonic() + within
    while True:
        try:
            value = check()
        except WebDriverException:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"the page did not show {what} within {within} s")
        time.sleep(0.2)


def texts(browser: webdriver.Chrome, selector: str) -> list[str]:
    return [element.text for element in browser.find_elements(By.CSS_SELECTOR, selector)]


def status(browser: webdriver.Chrome) -> str:
    return browser.find_element(By.ID, "status").text


def test_a_photo_picked_on_the_page_shows_annotated_with_its_names(browser, gateway, shared_faces, tmp_path):
    browser.get(gateway.url + "/")
    browser.find_element(By.ID, "photo").send_keys(str(shared_faces / "test" / "kit_with_rose.jpg"))
    names = until(lambda: texts(browser, "#faces td.name"), "the table of faces")
    assert sorted(names) == ["kit_harington", "rose_leslie"]
    assert until(lambda: browser.execute_script("return document.getElementById('annotated').naturalWidth"),
                 "the annotated image") == 501
    assert "2 faces" in status(browser)
    browser.save_screenshot(str(tmp_path / "photo-page.png"))

    browser.find_element(By.ID, "photo").send_keys(str(REPO_PROBES / "SOURCES.md"))  # not a picture
    assert "not a JPEG, PNG, WebP or BMP image (bad_image)" in until(
        lambda: "bad_image" in status(browser) and status(browser), "the refusal")


def person(browser: webdriver.Chrome, name: str) -> list:
    return browser.find_elements(By.CSS_SELECTOR, f'li.person[data-name="{name}"]')


def test_the_gallery_page_enrols_and_removes_a_person(browser, gateway, tmp_path):
    browser.get(gateway.url + "/gallery")
    until(lambda: person(browser, "obama"), "the gallery")
    assert not person(browser, "Grace Hopper")

    browser.find_element(By.ID, "enrol-name").send_keys("Grace Hopper")
    browser.find_element(By.ID, "enrol-photo").send_keys(str(REPO_PROBES / "grace_hopper.jpg"))
    browser.find_element(By.CSS_SELECTOR, "#enrol button[type=submit]").click()
    [grace] = until(lambda: person(browser, "Grace Hopper"), "the new person")
    assert "1 photo" in grace.text
    [thumbnail] = until(lambda: person(browser, "Grace Hopper")[0].find_elements(By.CSS_SELECTOR, "img.thumbnail"),
                        "her thumbnail")
    assert until(lambda: browser.execute_script("return arguments[0].complete && Math.max(arguments[0].naturalWidth, arguments[0].naturalHeight)",
                                                thumbnail), "the thumbnail loaded") == 160
    grace = person(browser, "Grace Hopper")[0]
    assert "Added a photo of Grace Hopper" in status(browser)
    browser.save_screenshot(str(tmp_path / "gallery-page.png"))

    browser.find_element(By.ID, "enrol-name").send_keys("Nobody")
    browser.find_element(By.ID, "enrol-photo").send_keys(str(REPO_PROBES / "no_face.jpg"))
    browser.find_element(By.CSS_SELECTOR, "#enrol button[type=submit]").click()
    assert "exactly one face" in until(lambda: "bad_photo" in status(browser) and status(browser), "the refusal")
    assert not person(browser, "Nobody")

    grace.find_element(By.CSS_SELECTOR, "button.remove").click()
    browser.switch_to.alert.accept()
    until(lambda: not person(browser, "Grace Hopper"), "Grace Hopper gone")
    assert "Removed Grace Hopper (1 photos)" in status(browser)
    assert person(browser, "obama")


def test_the_live_page_streams_the_camera_and_shows_the_frames_labelled(browser, gateway, tmp_path):
    browser.get(gateway.url + "/live")
    browser.find_element(By.ID, "start").click()
    until(lambda: "lin-manuel-miranda" in browser.find_element(By.ID, "names").text, "a named face")
    until(lambda: int(browser.find_element(By.ID, "frames").text) >= 5, "five frames answered")
    assert float(browser.find_element(By.ID, "fps").text) > 0
    # the canvas shows the camera's frame, boxes and names drawn on it
    size = browser.execute_script("const c = document.getElementById('view'); return [c.width, c.height];")
    assert size == [640, 360]
    browser.save_screenshot(str(tmp_path / "live-page.png"))
    browser.find_element(By.ID, "stop").click()
