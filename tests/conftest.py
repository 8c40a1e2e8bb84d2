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
    compat_kube_version,
    install,
    namespace_for_test,
    operator_kubeconfig,
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


@pytest.fixture(scope="session")
def fault_bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A bed of its own for the fault tests, which kill and freeze its apiserver: the shared bed, and the
    tests that run on it later, never see those faults."""
    if os.environ.get("KUBECONFIG"):
        pytest.skip("fault tests kill the apiserver: they need the local KWOK bed, not KUBECONFIG")
    state = Path(os.environ.get("ROLECALL_FAULT_BED_DIR", REPO / ".testbed" / "faults"))
    for bed in start_cluster(state):
        install(bed)
        yield bed


@pytest.fixture(scope="session")
def incluster_bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A bed of its own where rolecall is installed the way users install it (Helm, kustomize) and runs as a
    pod from the image (the container stand-in): its cluster-wide operator must not meet the local operators
    of the other tests."""
    if os.environ.get("KUBECONFIG"):
        pytest.skip("in-cluster tests run the image through the bed's container stand-in")
    state = Path(os.environ.get("ROLECALL_INCLUSTER_BED_DIR", REPO / ".testbed" / "incluster"))
    yield from start_cluster(state)


@pytest.fixture(scope="session")
def upgrade_bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A bed of its own for the upgrade test: an older release installed with Helm, then upgraded."""
    if os.environ.get("KUBECONFIG"):
        pytest.skip("the upgrade test runs the images through the bed's container stand-in")
    state = Path(os.environ.get("ROLECALL_UPGRADE_BED_DIR", REPO / ".testbed" / "upgrade"))
    yield from start_cluster(state)


@pytest.fixture(scope="session")
def compat_bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A bed whose apiserver, controller-manager and scheduler are the oldest supported Kubernetes."""
    if os.environ.get("KUBECONFIG"):
        pytest.skip("the compatibility bed runs its own apiserver version; KUBECONFIG names one cluster")
    from testbed.cluster import cache_bin_dir

    kube_dir = cache_bin_dir().parent / f"kube-{compat_kube_version()}"
    state = Path(os.environ.get("ROLECALL_COMPAT_BED_DIR", REPO / ".testbed" / "compat"))
    yield from start_cluster(state, kube_dir=kube_dir)


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
