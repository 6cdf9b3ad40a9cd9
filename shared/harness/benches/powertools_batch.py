"""Powertools for AWS Lambda (Python) BatchProcessor on the same SQS batch file as the Rust bench:
decode each record's EventBridge event and envelope, acknowledge. Prints records/s as JSON."""
import json
import sys
import time

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response


def record_handler(record):
    event = json.loads(record.body)
    detail = event["detail"]
    assert detail["metadata"]["eventType"] == event["detail-type"]
    return detail["data"]["orderId"]


def main(path, seconds=3.0):
    with open(path) as f:
        batch = json.load(f)
    n = len(batch["Records"])
    processor = BatchProcessor(event_type=EventType.SQS)
    # warm up
    for _ in range(200):
        out = process_partial_response(event=batch, record_handler=record_handler, processor=processor)
        assert out == {"batchItemFailures": []}, out
    iterations, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        process_partial_response(event=batch, record_handler=record_handler, processor=processor)
        iterations += 1
    elapsed = time.perf_counter() - start
    print(json.dumps({"records_per_second": iterations * n / elapsed, "iterations": iterations, "batch": n}))


if __name__ == "__main__":
    main(sys.argv[1])
