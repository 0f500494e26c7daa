"""A face's quality: sharpness falls with blur, pose from the landmarks, the figures of a real face."""

from __future__ import annotations

import cv2
import pytest

from facewire.faces import images, quality
from facewire.faces.boxes import Detection
from facewire.faces.detection import detect_faces
from facewire.faces.settings import DetectorSettings

from .conftest import REPO_PROBES


def test_pose_is_frontal_level_turned_and_tilted_as_the_landmarks_say():
    frontal = ((40.0, 50.0), (60.0, 50.0), (50.0, 60.0), (42.0, 70.0), (58.0, 70.0))
    assert quality.pose(frontal) == pytest.approx((0.0, 0.0))
    over_right_eye = ((40.0, 50.0), (60.0, 50.0), (60.0, 60.0), (42.0, 70.0), (58.0, 70.0))
    assert quality.pose(over_right_eye)[0] == pytest.approx(90.0)
    assert quality.pose(((40.0, 50.0), (60.0, 50.0), (45.0, 60.0), (0, 0), (0, 0)))[0] == pytest.approx(-30.0)
    tilted = ((40.0, 50.0), (60.0, 70.0), (50.0, 60.0), (0, 0), (0, 0))
    assert quality.pose(tilted) == pytest.approx((0.0, 45.0))


def test_a_real_face_is_sharp_until_blurred_and_frontal():
    photo = images.read_image(REPO_PROBES / "grace_hopper.jpg")
    [face] = detect_faces(photo, DetectorSettings(detect_threads="1"))
    sharp = quality.face_quality(photo, face)
    blurred = quality.face_quality(cv2.GaussianBlur(photo, (0, 0), 3), face)
    assert sharp.width == face.box[1] - face.box[3]
    assert blurred.sharpness < sharp.sharpness / 5
    assert abs(sharp.yaw) < 15 and abs(sharp.roll) < 10
    assert set(sharp.to_json()) == {"width", "sharpness", "yaw", "roll"}


def test_without_landmarks_there_is_no_pose_and_an_empty_crop_is_not_sharp():
    photo = images.read_image(REPO_PROBES / "grace_hopper.jpg")
    assert quality.face_quality(photo, Detection((10, 60, 60, 10), 1.0)).yaw is None
    assert quality.sharpness(photo[0:0, 0:0]) == 0.0
