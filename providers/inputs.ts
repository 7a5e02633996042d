/**
 * A resource's arguments from its provider's zod input schema (providers/impl/<kind>.ts), so that
 * the fields, their optional-ness, their documentation and their defaults are written once, in the
 * schema: `ArgsOf<z.input<typeof schema>>` is each field as a `pulumi.Input` (a field with a
 * default is optional), without `admin`, which old states may hold but no program passes.
 */
import type * as pulumi from "@pulumi/pulumi";

/** Each field of `T` as a `pulumi.Input`, optional-ness and documentation kept. */
export type Inputs<T> = { [K in keyof T]: pulumi.Input<T[K]> };

/** The arguments of a resource whose provider's schema has the input type `T`. */
export type ArgsOf<T> = Inputs<Omit<T, "admin">>;
