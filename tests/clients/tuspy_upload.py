"""Uploads FILE to ENDPOINT (…/uploads) with tuspy, as NAME; prints the upload URL.

    python tuspy_upload.py ENDPOINT FILE NAME [CHUNK_SIZE]

Retries like a patient client (up to 60 times, 0.5 s apart): each retry asks the server
(HEAD) where to resume. With TUS_AUTHORIZATION set (e.g. "Bearer <token>"), every request
carries it as the Authorization header.
"""

import os
import sys

from tusclient import client

endpoint, path, name = sys.argv[1:4]
chunk = int(sys.argv[4]) if len(sys.argv) > 4 else 4 * 1024 * 1024
auth = os.environ.get("TUS_AUTHORIZATION")
headers = {"Authorization": auth} if auth else {}
uploader = client.TusClient(endpoint, headers=headers).uploader(
    path,
    chunk_size=chunk,
    metadata={"filename": name},
    upload_checksum=True,
    retries=60,
    retry_delay=0.5,
)
uploader.upload()
print(uploader.url, flush=True)
