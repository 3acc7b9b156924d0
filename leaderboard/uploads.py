"""Upload handling shared by the submission form and the upload API."""

from __future__ import annotations

from django.core.files.uploadhandler import FileUploadHandler, StopUpload

from .services.submissions import bundle_max_bytes


class BundleSizeLimitHandler(FileUploadHandler):
    """Stops storing an upload once it passes ``VADI_BUNDLE_MAX_BYTES``, so a huge body cannot fill the disk.

    Put it first in ``request.upload_handlers`` before the body is read; afterwards ``exceeded``
    says whether the upload was cut off (the file is then absent from ``request.FILES``).
    """

    def __init__(self, request=None) -> None:
        super().__init__(request)
        self.limit = bundle_max_bytes()
        self.received = 0
        self.exceeded = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > self.limit:
            self.exceeded = True
            raise StopUpload(connection_reset=False)  # discard the rest of the body, keep nothing
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None

    @property
    def message(self) -> str:
        return f"the bundle is larger than the limit of {self.limit:,} bytes"
