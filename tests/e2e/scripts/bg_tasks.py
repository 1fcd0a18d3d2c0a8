"""A background task for `.delay()`; imported by both the submitter and `prefect task serve`."""

from prefect import task


@task
def double(x: int) -> int:
    return 2 * x
