/**
 * How a provider reaches the Qubes Admin API: the dom0 qubesd socket, qrexec-client-vm from a
 * management qube, or qubes-sim's socket. Every resource takes it as its `admin` input; `diff`
 * ignores it, so moving the socket never shows as a change of the site.
 */
import { z } from "zod";

/** The `admin` input of every resource (the stack config's `qubes-build-infra:admin`). */
export type AdminConnection =
  | { transport: "sim"; socket: string }
  | { transport: "socket"; socket: string }
  | { transport: "qrexec" };

/** zod schema of `AdminConnection`, for the provider implementations. */
export const adminConnection = z.discriminatedUnion("transport", [
  z.object({ transport: z.literal("sim"), socket: z.string().min(1) }),
  z.object({ transport: z.literal("socket"), socket: z.string().min(1) }),
  z.object({ transport: z.literal("qrexec") }),
]);
