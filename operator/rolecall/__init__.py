"""rolecall: a Kubernetes operator that gives server roles a declarative maintenance API."""

GROUP = "rolecall.dev"
