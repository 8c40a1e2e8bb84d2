"""Session fixtures: one cluster, the install from the repo's own files, a namespace per test, operators."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import (
    REPO,
    Cluster,
    Operator,
    install,
    namespace_for_test,
    operator_kubeconfig,
    pinned_version,
    start_cluster,
)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    state = Path(os.environ.get("ROLECALL_TEST_BED_DIR", REPO / ".testbed" / "test"))
    yield from start_cluster(state)


@pytest.fixture(scope="session")
def installed(cluster: Cluster) -> Cluster:
    install(cluster)
    return cluster


def _bed_of_its_own(name: str, why_not_kubeconfig: str, kube_dir: Path | None = None) -> Iterator[Cluster]:
    """A local bed in .testbed/<name> (or $ROLECALL_<NAME>_BED_DIR), for tests that must not share one.
    They need the local KWOK bed, so they are skipped when KUBECONFIG points the suite at another cluster."""
    if os.environ.get("KUBECONFIG"):
        pytest.skip(why_not_kubeconfig)
    state = Path(os.environ.get(f"ROLECALL_{name.upper()}_BED_DIR", REPO / ".testbed" / name))
    yield from start_cluster(state, kube_dir=kube_dir)


@pytest.fixture(scope="session")
def fault_bed() -> Iterator[Cluster]:
    """A bed of its own for the fault tests, which kill and freeze its apiserver: the shared bed, and the
    tests that run on it later, never see those faults."""
    for bed in _bed_of_its_own("faults", "fault tests kill the apiserver: they need the local bed, not KUBECONFIG"):
        install(bed)
        yield bed


@pytest.fixture(scope="session")
def incluster_bed() -> Iterator[Cluster]:
    """A bed of its own where rolecall is installed the way users install it (Helm, kustomize) and runs as a
    pod from the image (the container stand-in): its cluster-wide operator must not meet the local operators
    of the other tests."""
    yield from _bed_of_its_own("incluster", "in-cluster tests run the image through the bed's container stand-in")


@pytest.fixture(scope="session")
def upgrade_bed() -> Iterator[Cluster]:
    """A bed of its own for the upgrade test: an older release installed with Helm, then upgraded."""
    yield from _bed_of_its_own("upgrade", "the upgrade test runs the images through the bed's container stand-in")


@pytest.fixture(scope="session")
def compat_bed() -> Iterator[Cluster]:
    """A bed whose apiserver, controller-manager and scheduler are the oldest supported Kubernetes."""
    from testbed.cluster import cache_bin_dir

    oldest = cache_bin_dir().parent / f"kube-{pinned_version('COMPAT_KUBE_VERSION')}"
    yield from _bed_of_its_own("compat", "the compatibility bed runs its own apiserver version; KUBECONFIG names one "
                               "cluster", kube_dir=oldest)


@pytest.fixture
def fault_namespace(request: pytest.FixtureRequest, fault_bed: Cluster) -> Iterator[str]:
    yield from namespace_for_test(fault_bed, request)


@pytest.fixture
def fault_operator(fault_bed: Cluster, fault_namespace: str, tmp_path: Path) -> Iterator[Operator]:
    """Operators (not yet started) on the fault bed, watching the test's namespace."""
    yield from _operators(operator_kubeconfig(fault_bed, tmp_path / "kubeconfig"), fault_namespace, tmp_path)


@pytest.fixture
def local_bed(cluster: Cluster) -> Cluster:
    """For tests that need engine stand-ins or pod exec on this machine."""
    if not cluster.local:
        pytest.skip("needs the local KWOK bed (engine stand-ins); KUBECONFIG names another cluster")
    return cluster


@pytest.fixture
def namespace(request: pytest.FixtureRequest, cluster: Cluster) -> Iterator[str]:
    yield from namespace_for_test(cluster, request)


@pytest.fixture(scope="session")
def operator_token_kubeconfig(installed: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return operator_kubeconfig(installed, tmp_path_factory.mktemp("operator") / "kubeconfig")


@pytest.fixture
def operator(installed: Cluster, operator_token_kubeconfig: Path, namespace: str,
             tmp_path: Path) -> Iterator[Operator]:
    """Returns an operator (not yet started) that watches the test's namespace, with the ServiceAccount's token."""
    yield from _operators(operator_token_kubeconfig, namespace, tmp_path)


def _operators(kubeconfig: Path, namespace: str, log_dir: Path) -> Iterator[Operator]:
    op = Operator(kubeconfig=kubeconfig, namespaces=[namespace], log_dir=log_dir, lease_namespace=namespace)
    yield op
    op.stop_all()
    print(f"--- operator logs ({log_dir}) ---\n" + op.logs()[-20000:])
