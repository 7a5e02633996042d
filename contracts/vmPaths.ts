/**
 * Where the site puts its in-VM services' configs and secrets, and where those services read them:
 * the site writes the files, the policy pack reads them back from the resources, the services open them.
 */

/** The site's configuration directory inside a VM (under /usr/local, so it persists in an AppVM). */
export const VM_CONFIG_DIR = "/usr/local/etc/qubes-build-infra";
/** Secrets (mode 0600, owned by the user), apart from the configs. */
export const VM_SECRETS_DIR = `${VM_CONFIG_DIR}/secrets`;

/** The config of service program `name` (its file name without `.js`). */
export function serviceConfigPath(name: string): string {
  return `${VM_CONFIG_DIR}/${name}.json`;
}

/** The secret named `name`. */
export function serviceSecretPath(name: string): string {
  return `${VM_SECRETS_DIR}/${name}`;
}
