// One OpenPGP v4 fingerprint shape (contracts/fingerprint.ts): the providers, the site's config and
// the services accept and refuse the same fingerprints, differing only in how lenient the spelling is.
import { FINGERPRINT_RE, fingerprint, fingerprintAnyCase, fingerprintAsPrinted } from "../../contracts/fingerprint";
import { fingerprint as serviceFingerprint } from "../../services/lib/shapes";
import { keyInputs } from "../../providers/impl/signingKey";

const FPR = "0123456789ABCDEF0123456789ABCDEF01234567";
const WRONG = ["", FPR.slice(1), `${FPR}8`, `0x${FPR}`, `${FPR.slice(1)}G`, `${FPR}\n`, "0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF"];

test("the canonical spelling is exactly 40 upper-case hex digits", () => {
  expect(FINGERPRINT_RE.test(FPR)).toBe(true);
  expect(fingerprint.parse(FPR)).toBe(FPR);
  expect(fingerprint.safeParse(FPR.toLowerCase()).success).toBe(false);
  for (const w of WRONG) expect(fingerprint.safeParse(w).success).toBe(false);
});

test("the lenient forms normalise case (and, as printed, spaces) and still refuse every wrong length or digit", () => {
  expect(fingerprintAnyCase.parse(FPR.toLowerCase())).toBe(FPR);
  expect(fingerprintAnyCase.safeParse("0123 4567 89AB CDEF 0123  4567 89AB CDEF 0123 4567").success).toBe(false);
  expect(fingerprintAsPrinted.parse("0123 4567 89ab CDEF 0123  4567 89AB CDEF 0123 4567")).toBe(FPR);
  for (const w of WRONG) expect(fingerprintAnyCase.safeParse(w).success).toBe(false);
  // As printed, a trailing newline is only white space.
  for (const w of WRONG.filter((x) => !x.endsWith("\n"))) expect(fingerprintAsPrinted.safeParse(w).success).toBe(false);
});

test("the error names what was expected", () => {
  const r = fingerprint.safeParse("ABC");
  expect(r.success).toBe(false);
  expect(r.error?.issues[0].message).toBe("a 40-hex-digit upper-case OpenPGP v4 fingerprint");
});

test("the services and the providers use it", () => {
  expect(serviceFingerprint.parse(FPR.toLowerCase())).toBe(FPR);
  expect(serviceFingerprint.safeParse(`0x${FPR}`).success).toBe(false);
  const base = { vm: "keys-x", uid: "u" };
  expect(keyInputs.safeParse({ ...base, expectFingerprint: FPR }).success).toBe(true);
  expect(keyInputs.safeParse({ ...base, expectFingerprint: FPR.toLowerCase() }).success).toBe(false);
});
