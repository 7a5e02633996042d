// The real Pulumi engine, offline, driving a trivial dynamic resource through the Automation API.
import * as fs from "fs";
import * as path from "path";
import { openStack, projectRoot, tempDir } from "../helpers/pulumi";

jest.setTimeout(300_000);

describe("the Pulumi engine with our language host and dynamic-provider shim", () => {
  const work = tempDir("engine");
  const backend = tempDir("engine-backend");
  const outDir = path.join(work, "out");
  // A copy of the fixture program, so that the test may edit its provider code.
  const program = path.join(projectRoot, "test", "engine", `.fixture-${process.pid}`);

  beforeAll(() => {
    fs.cpSync(path.join(projectRoot, "test", "engine", "fixture"), program, { recursive: true });
  });
  afterAll(() => {
    fs.rmSync(program, { recursive: true, force: true });
    fs.rmSync(work, { recursive: true, force: true });
    fs.rmSync(backend, { recursive: true, force: true });
  });

  it("previews, creates, converges, updates, refreshes, picks up provider code and destroys", async () => {
    const stack = await openStack(program, "engine", backend);
    await stack.setConfig("dir", { value: outDir });
    await stack.setConfig("content", { value: "hello" });
    const file = path.join(outDir, "greeting.txt");

    const preview = await stack.preview();
    expect(preview.changeSummary.create).toBe(2); // the stack and the file
    expect(fs.existsSync(file)).toBe(false);

    const up = await stack.up();
    expect(up.summary.resourceChanges).toEqual({ create: 2 });
    expect(fs.readFileSync(file, "utf8")).toBe("hello");
    expect(up.outputs.written.value).toBe("hello");

    const again = await stack.up();
    expect(again.summary.resourceChanges).toEqual({ same: 2 });

    await stack.setConfig("content", { value: "bonjour" });
    const changedKeys = new Set<string>();
    const changed = await stack.preview({
      onEvent: (e) => {
        const m = e.resourcePreEvent?.metadata;
        if (m?.op !== "update" || m.type !== "pulumi-nodejs:dynamic:Resource" || !m.old || !m.new) return;
        const olds = m.old.inputs as Record<string, unknown>;
        const news = m.new.inputs as Record<string, unknown>;
        for (const k of Object.keys(news)) {
          if (k !== "__provider" && JSON.stringify(olds[k]) !== JSON.stringify(news[k])) changedKeys.add(k);
        }
      },
    });
    expect(changed.changeSummary.update).toBe(1);
    expect([...changedKeys]).toEqual(["content"]);
    await stack.up();
    expect(fs.readFileSync(file, "utf8")).toBe("bonjour");

    // Drift made behind Pulumi's back is found by refresh.
    fs.writeFileSync(file, "tampered");
    const refresh = await stack.refresh();
    expect(refresh.summary.resourceChanges?.update).toBe(1);
    const repaired = await stack.up();
    expect(repaired.summary.resourceChanges?.update).toBe(1);
    expect(fs.readFileSync(file, "utf8")).toBe("bonjour");

    // Changed provider code (not stored state) is what runs, and its effect is previewed.
    const impl = path.join(program, "localFile.ts");
    fs.writeFileSync(impl, fs.readFileSync(impl, "utf8").replace(
      "const render = (content: string): string => content;",
      "const render = (content: string): string => content.toUpperCase();"));
    const codePreview = await stack.preview();
    expect(codePreview.changeSummary.update).toBe(1);
    await stack.up();
    expect(fs.readFileSync(file, "utf8")).toBe("BONJOUR");

    const destroy = await stack.destroy();
    // destroy runs the program too (PULUMI_RUN_PROGRAM, scripts/env.sh), which the summary counts as `same`.
    expect(destroy.summary.resourceChanges).toMatchObject({ delete: 2 });
    expect(fs.existsSync(file)).toBe(false);
  });
});
