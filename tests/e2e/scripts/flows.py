"""Flows the end-to-end tests deploy; mounted at /e2e in the Prefect stand-in image."""

from prefect import flow, task


@task
def add(a: int, b: int) -> int:
    return a + b


@flow(log_prints=True)
def hello(name: str = "prefect-ha") -> int:
    print(f"hello from {name}")
    return add(20, 22)


@flow
def tick() -> str:
    return "tick"
