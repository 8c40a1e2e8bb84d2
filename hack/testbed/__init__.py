"""The local rolecall test bed: a real kube-apiserver + etcd with KWOK nodes and real engine stand-ins."""
