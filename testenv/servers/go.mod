// The test environment's own loopback servers (OIDC issuer, git smart HTTP, Helm chart
// repository, GitHub-like pull-request API), started once per cluster by scripts/testenv.sh.
// Standard library only.
module devops-stack.dev/testenv/servers

go 1.24
