/** `qubes-build-infra import-pillar <build-infra.sls>`: prints stack config YAML for Pulumi.<stack>.yaml. */
import * as fs from "fs";
import { stringify } from "yaml";
import { importPillar } from "./pillar";

function main(argv: string[]): number {
  const [cmd, file] = argv;
  if (cmd !== "import-pillar" || !file) {
    process.stderr.write("usage: qubes-build-infra import-pillar <build-infra.sls>\n");
    return 2;
  }
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    process.stderr.write(`${file}: ${(e as Error).message}\n`);
    return 1;
  }
  try {
    const { config, notes } = importPillar(text, file);
    process.stdout.write(stringify({ config }));
    for (const n of notes) process.stderr.write(`note: ${n}\n`);
    return 0;
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    return 1;
  }
}

process.exitCode = main(process.argv.slice(2));
