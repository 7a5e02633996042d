/**
 * The site checks each service configuration it writes against the service's own schema
 * (contracts/serviceConfig/): a value the service would refuse fails the run, naming the file and field.
 */
import { checkedConfig } from "../../site/components";
import { ConnectSshConfig } from "../../contracts/serviceConfig/connectSsh";

describe("checkedConfig", () => {
  test("a value the service accepts is written as given (the service applies its defaults)", () => {
    const v = { hosts: { "upload.example.org": { port: 2222 } } };
    expect(checkedConfig("connect-ssh", ConnectSshConfig, v)).toBe(v);
  });

  test("a field the service does not know is refused, naming the file and the field", () => {
    const v = { hosts: { "upload.example.org": { prot: 2222 } } };
    expect(() => checkedConfig("connect-ssh", ConnectSshConfig, v)).toThrow(/connect-ssh\.json .*hosts\.upload\.example\.org/);
  });

  test("a value of the wrong shape is refused, naming the field", () => {
    expect(() => checkedConfig("connect-ssh", ConnectSshConfig, { hosts: { "-bad": {} } })).toThrow(/connect-ssh\.json .*hosts\.-bad/);
  });
});
