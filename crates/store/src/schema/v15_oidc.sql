-- Single sign-on: the OpenID Connect subject (`sub` of the configured provider) an admin linked
-- to a user. One identity signs in as at most one user.
ALTER TABLE users ADD COLUMN oidc_subject TEXT;
CREATE UNIQUE INDEX users_oidc_subject ON users (oidc_subject) WHERE oidc_subject IS NOT NULL;
-- 1: the role and wards come from the provider's groups (auth.oidc.groups) and are set again at
-- each single sign-on; 0: an admin manages them.
ALTER TABLE users ADD COLUMN oidc_managed INTEGER NOT NULL DEFAULT 0 CHECK (oidc_managed IN (0, 1));
