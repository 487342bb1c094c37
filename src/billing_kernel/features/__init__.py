"""Features: what a plan grants besides quantities (`sso`, `max_projects: 5`), an org's own
values, and its entitlements: every feature and limit it has, in one read."""
