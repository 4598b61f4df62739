"""Where frames go: a virtual camera (pyvirtualcam), a preview window (OpenCV), a video file; and the
compositor that builds the output frame. Every output has ``send(rgb_uint8)`` and ``close()``; only this
package touches those devices.
"""

from .compose import Compositor, letterbox
from .file import FileOutput
from .preview import PreviewWindow, display_available
from .vcam import VirtualCamera, vcam_hint

__all__ = ["Compositor", "FileOutput", "PreviewWindow", "VirtualCamera", "display_available", "letterbox",
           "vcam_hint"]
