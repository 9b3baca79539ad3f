"""Legacy environment images read their params from S3 (CONTRACT section 9)."""

import gzip
import json


def params_key(config, execution_id) -> str:
    return f"{config['PARAMS_S3_PREFIX'].strip('/')}/{execution_id}.json.gz"


def write_params(config, execution) -> None:
    import boto3

    body = gzip.compress(json.dumps(execution.params).encode())
    boto3.client("s3", endpoint_url=config.get("S3_ENDPOINT_URL")).put_object(
        Bucket=config["PARAMS_S3_BUCKET"], Key=params_key(config, execution.id), Body=body
    )
