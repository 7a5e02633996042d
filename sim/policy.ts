/**
 * The qubes-core-qrexec policy admin services (policy.List / Get / Replace / Remove) over the
 * dom0 policy directory `<state>/dom0/etc/qubes/policy.d`. Tokens are `sha256:<hex>` of the
 * current content; `new` requires the file to be absent, `any` skips the check.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { parsePolicyFile } from "../qrexec/parser";
import { SimError } from "./model";
import { atomicWrite, fsyncDir } from "./state";

export function computeToken(data: Buffer): string {
  return "sha256:" + crypto.createHash("sha256").update(data).digest("hex");
}

export class PolicyDir {
  constructor(readonly dir: string) {
    fs.mkdirSync(dir, { recursive: true });
  }

  private file(name: string): string {
    if (!/^[A-Za-z0-9_-]+$/.test(name))
      throw new SimError("PolicyAdminInvalidFileNameException", `Invalid policy file name: ${name}\nNames must contain only alphanumeric characters, underscore and hyphen.`);
    return path.join(this.dir, name + ".policy");
  }

  private read(file: string): Buffer | undefined {
    try {
      return fs.readFileSync(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw e;
    }
  }

  private checkToken(token: string, file: string): void {
    if (token === "any") return;
    const cur = this.read(file);
    if (token === "new") {
      if (cur !== undefined) throw new SimError("PolicyAdminTokenException", "File exists but token is 'new'");
      return;
    }
    if (!token.startsWith("sha256:")) throw new SimError("PolicyAdminProtocolException", "Unrecognized token");
    if (cur === undefined) throw new SimError("PolicyAdminTokenException", "File doesn't exist, but token isn't 'new'");
    if (computeToken(cur) !== token) throw new SimError("PolicyAdminTokenException", "Token mismatch");
  }

  handle(method: string, arg: string, payload: Buffer): string {
    switch (method) {
      case "policy.List": {
        if (arg) throw new SimError("PolicyAdminProtocolException", "Unexpected argument");
        return fs
          .readdirSync(this.dir)
          .filter((f) => f.endsWith(".policy") && !f.startsWith("!") && !f.startsWith("."))
          .map((f) => f.slice(0, -".policy".length))
          .sort()
          .map((n) => n + "\n")
          .join("");
      }
      case "policy.Get": {
        if (payload.length) throw new SimError("PolicyAdminProtocolException", "Unexpected payload");
        const f = this.file(arg);
        const data = this.read(f);
        if (data === undefined) throw new SimError("PolicyAdminFileNotFoundException", `Not found: ${f}`);
        return computeToken(data) + "\n" + data.toString("utf8");
      }
      case "policy.Replace": {
        const f = this.file(arg);
        const nl = payload.indexOf(0x0a);
        if (nl < 0) throw new SimError("PolicyAdminProtocolException", "Payload needs to include first line with token");
        this.checkToken(payload.subarray(0, nl).toString("latin1"), f);
        const content = payload.subarray(nl + 1);
        const parsed = parsePolicyFile(content, f);
        if (parsed.errors.length) {
          const e = parsed.errors[0];
          throw new SimError("PolicyAdminSyntaxException", `Policy change validation failed: ${e.file}:${e.line}: ${e.message}`);
        }
        atomicWrite(f, content);
        return "";
      }
      case "policy.Remove": {
        const f = this.file(arg);
        this.checkToken(payload.toString("latin1"), f);
        if (this.read(f) === undefined) throw new SimError("PolicyAdminFileNotFoundException", `Not found: ${f}`);
        fs.unlinkSync(f);
        fsyncDir(this.dir);
        return "";
      }
      default:
        throw new SimError("PolicyAdminProtocolException", `unrecognized method: ${method}`);
    }
  }
}
