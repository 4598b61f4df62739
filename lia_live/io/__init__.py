"""Reading images / videos / frame folders and writing mp4 or PNG sequences."""

from .video import (
                    FrameSource,
                    PngDirWriter,
                    VideoWriter,
                    check_driving,
                    check_writer_path,
                    open_frames,
                    open_writer,
                    read_image,
)

__all__ = ["FrameSource", "PngDirWriter", "VideoWriter", "check_driving", "check_writer_path", "open_frames",
           "open_writer", "read_image"]
