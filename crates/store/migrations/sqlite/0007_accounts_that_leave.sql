-- Sign-in that resists guessing and accounts that can leave: disabled
-- accounts, the last second-factor time step used (a code works once),
-- wrong codes counted per half-signed-in session, API keys that expire or
-- are revoked, devices that are revoked. Keep in lock-step with
-- ../postgres/0007_accounts_that_leave.sql.

ALTER TABLE accounts ADD COLUMN disabled BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN totp_last_step BIGINT NULL;
ALTER TABLE sessions ADD COLUMN factor_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN expires_at BIGINT NULL;
ALTER TABLE api_keys ADD COLUMN revoked_at BIGINT NULL;
ALTER TABLE devices ADD COLUMN revoked_at BIGINT NULL;
