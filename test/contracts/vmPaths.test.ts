// The site writes its services' configs and secrets where the services read them (contracts/vmPaths.ts).
import { serviceConfigPath, serviceSecretPath, VM_CONFIG_DIR, VM_SECRETS_DIR } from "../../contracts/vmPaths";
import { WEBHOOK_SECRET_PATH, WIN_SIGN_CONFIG_PATH } from "../../policy/checks";
import { configPath, secretPath } from "../../services/lib/config";

const saved = { c: process.env.QBI_CONFIG, s: process.env.QBI_SECRET_FILE };
afterEach(() => {
  for (const [k, v] of [["QBI_CONFIG", saved.c], ["QBI_SECRET_FILE", saved.s]] as const) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

test("configs and secrets live under /usr/local/etc/qubes-build-infra", () => {
  expect(VM_CONFIG_DIR).toBe("/usr/local/etc/qubes-build-infra");
  expect(VM_SECRETS_DIR).toBe("/usr/local/etc/qubes-build-infra/secrets");
  expect(serviceConfigPath("webhooks")).toBe("/usr/local/etc/qubes-build-infra/webhooks.json");
  expect(serviceSecretPath("webhooks")).toBe("/usr/local/etc/qubes-build-infra/secrets/webhooks");
});

test("the policy pack checks the paths the services read", () => {
  delete process.env.QBI_CONFIG;
  delete process.env.QBI_SECRET_FILE;
  expect(WEBHOOK_SECRET_PATH).toBe(secretPath("webhooks"));
  expect(WIN_SIGN_CONFIG_PATH).toBe(configPath("win-sign"));
});

test("the services' environment overrides come first", () => {
  process.env.QBI_CONFIG = "/tmp/x.json";
  process.env.QBI_SECRET_FILE = "/tmp/secret";
  expect(configPath("webhooks")).toBe("/tmp/x.json");
  expect(secretPath("webhooks")).toBe("/tmp/secret");
});
