from typing import BinaryIO


class S3Storage:
    def __init__(self, bucket: str, prefix: str, client=None, endpoint_url: str | None = None):
        import boto3

        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.client = client or boto3.client("s3", endpoint_url=endpoint_url)

    @classmethod
    def from_url(cls, url: str, endpoint_url: str | None = None) -> "S3Storage":
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        return cls(bucket, prefix, endpoint_url=endpoint_url)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, source: BinaryIO) -> None:
        self.client.upload_fileobj(source, self.bucket, self._key(key))

    def open(self, key: str) -> BinaryIO:
        return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def presigned_url(self, key: str, *, expires_in: int, filename: str, media_type: str) -> str:
        """A URL that GETs `key` (ranges too) without credentials for `expires_in` seconds."""
        params = {
            "Bucket": self.bucket,
            "Key": self._key(key),
            "ResponseContentType": media_type,
            "ResponseContentDisposition": content_disposition(filename),
        }
        return self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_in)


def content_disposition(filename: str) -> str:
    from urllib.parse import quote

    ascii_name = filename.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
