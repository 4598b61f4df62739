"""The OpenCV preview window's picture: a view of the :class:`~lia_live.live.controller.LiveController`
(its newest frames, its state and numbers), like any other front end."""

from __future__ import annotations

import numpy as np

from ..output.overlay import draw_lines, side_by_side
from ..stats import stats_line
from .controller import LiveController


def overlay_lines(controller: LiveController) -> list[str]:
    """The text drawn over the preview: numbers, mode, power, source, reference, offsets, no face."""
    st, frame = controller.state(), controller.preview()
    n = max(1, len(st.get("sources", [])))
    lines = [stats_line(controller.stats()),
             f"mode {st.get('mode')} | power {st.get('power', 0.0):.1f} | source {st['source_index'] + 1}/{n}"
             + (" | PASS-THROUGH" if st["passthrough"] else "")]
    c = st.get("reference_choice")
    if c is not None and st.get("mode") == "relative" and c["distance"] is not None:
        first = f" (first frame {c['first_distance']:.2f})" if c["first_distance"] is not None else ""
        lines.append(f"reference: distance to portrait {c['distance']:.2f}{first}")
    offsets, d = st.get("offsets", []), st.get("selected_direction", 0)
    if any(offsets) or d:
        lines.append(f"direction {d}: offset {offsets[d]:+.2f}")
    if frame is not None and not frame.face_found:
        lines.append("NO FACE: holding the last motion")
    return lines


def preview_picture(controller: LiveController) -> np.ndarray:
    """Camera | output side by side (the face box drawn on the camera), with :func:`overlay_lines`."""
    frame = controller.preview()
    out = frame.output if frame is not None and frame.output is not None else np.zeros((360, 640, 3), np.uint8)
    camera = frame.camera if frame is not None and frame.camera is not None else np.zeros_like(out)
    box = frame.box if frame is not None else None
    pic = side_by_side(camera, out, box=box, face_found=frame is None or frame.face_found)
    return draw_lines(pic, overlay_lines(controller))
