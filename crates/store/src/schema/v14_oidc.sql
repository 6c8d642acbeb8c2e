-- Single sign-on: the OpenID Connect subject (`sub` of the configured provider) an admin linked
-- to a user. One identity signs in as at most one user.
ALTER TABLE users ADD COLUMN oidc_subject TEXT;
CREATE UNIQUE INDEX users_oidc_subject ON users (oidc_subject) WHERE oidc_subject IS NOT NULL;
