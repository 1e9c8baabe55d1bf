# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_netfabric_global_optspecs
    string join \n store= state-dir= v/verbose h/help V/version
end

function __fish_netfabric_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_netfabric_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_netfabric_using_subcommand
    set -l cmd (__fish_netfabric_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c netfabric -n "__fish_netfabric_needs_command" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_needs_command" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_needs_command" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netfabric -n "__fish_netfabric_needs_command" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_needs_command" -f -a "zone" -d 'Zones: one /16 each (create, delete, list)'
complete -c netfabric -n "__fish_netfabric_needs_command" -f -a "host" -d 'Hosts: one /24 of a zone each, with the uplink and its underlay address (create, delete, list)'
complete -c netfabric -n "__fish_netfabric_needs_command" -f -a "owner" -d 'Owners: the users whose containers may always talk to each other (create, delete, list)'
complete -c netfabric -n "__fish_netfabric_needs_command" -f -a "group" -d 'Groups: sets of owners whose containers may talk to each other (create, delete, add-member, remove-member, list)'
complete -c netfabric -n "__fish_netfabric_needs_command" -f -a "container" -d 'Containers: each gets a persistent address on its host (create, delete, list)'
complete -c netfabric -n "__fish_netfabric_needs_command" -f -a "agent" -d 'The agent of one host: loads, attaches and pins the datapath and keeps its maps equal to the desired state'
complete -c netfabric -n "__fish_netfabric_needs_command" -f -a "lab" -d 'The lab: a zone of hosts, containers and agents built from network namespaces on this machine (up, down, status, run)'
complete -c netfabric -n "__fish_netfabric_needs_command" -f -a "maps" -d 'The pinned BPF maps of a host, read from bpffs (no agent needed): list them, or dump one decoded into names and addresses'
complete -c netfabric -n "__fish_netfabric_needs_command" -f -a "monitor" -d 'Live drops of a host from its ring buffer: time, direction, source, destination, reason; filters and JSON lines'
complete -c netfabric -n "__fish_netfabric_needs_command" -f -a "status" -d 'One screen per host: agent, programs attached, map pressure, counters by reason, store reachability'
complete -c netfabric -n "__fish_netfabric_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and not __fish_seen_subcommand_from create delete list help" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and not __fish_seen_subcommand_from create delete list help" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and not __fish_seen_subcommand_from create delete list help" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and not __fish_seen_subcommand_from create delete list help" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and not __fish_seen_subcommand_from create delete list help" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and not __fish_seen_subcommand_from create delete list help" -f -a "create" -d 'Create a zone: one /16 such as 10.1.0.0/16. Hosts of the zone are its /24s. Re-creating an identical zone does nothing'
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and not __fish_seen_subcommand_from create delete list help" -f -a "delete" -d 'Delete a zone (it must have no hosts left)'
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and not __fish_seen_subcommand_from create delete list help" -f -a "list" -d 'List zones'
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and not __fish_seen_subcommand_from create delete list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and __fish_seen_subcommand_from create" -l prefix -d 'The zone\'s /16, e.g. 10.1.0.0/16' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and __fish_seen_subcommand_from create" -l gateway-ip -d 'Underlay IPv4 of the router that hosts of other zones send this zone\'s traffic to' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and __fish_seen_subcommand_from create" -l gateway-mac -d 'MAC of that router' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and __fish_seen_subcommand_from create" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and __fish_seen_subcommand_from create" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and __fish_seen_subcommand_from create" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and __fish_seen_subcommand_from delete" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and __fish_seen_subcommand_from delete" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format' -r -f -a "table\t'A table for people'
json\t'A JSON array, the objects as in the state file, for scripts'"
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and __fish_seen_subcommand_from list" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and __fish_seen_subcommand_from list" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a zone: one /16 such as 10.1.0.0/16. Hosts of the zone are its /24s. Re-creating an identical zone does nothing'
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete a zone (it must have no hosts left)'
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and __fish_seen_subcommand_from help" -f -a "list" -d 'List zones'
complete -c netfabric -n "__fish_netfabric_using_subcommand zone; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and not __fish_seen_subcommand_from create delete list help" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and not __fish_seen_subcommand_from create delete list help" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and not __fish_seen_subcommand_from create delete list help" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and not __fish_seen_subcommand_from create delete list help" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and not __fish_seen_subcommand_from create delete list help" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and not __fish_seen_subcommand_from create delete list help" -f -a "create" -d 'Create a host: one /24 of its zone (10.<zone>.<number>.0/24) whose containers get .1-.254. Give --number or --subnet; with neither the lowest free number of the zone is used. Re-creating an identical host does nothing'
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and not __fish_seen_subcommand_from create delete list help" -f -a "delete" -d 'Delete a host (it must have no containers left)'
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and not __fish_seen_subcommand_from create delete list help" -f -a "list" -d 'List hosts'
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and not __fish_seen_subcommand_from create delete list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from create" -l zone -d 'The zone the host belongs to' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from create" -l number -d 'Host number 1..=254: the third octet of the host\'s /24' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from create" -l subnet -d 'The host\'s /24 instead of --number, e.g. 10.1.7.0/24 (must lie in the zone)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from create" -l uplink -d 'Name of the uplink interface to the underlay (XDP attaches there)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from create" -l underlay-ip -d 'The uplink\'s underlay IPv4 address (outside every zone)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from create" -l underlay-mac -d 'The uplink\'s MAC: other hosts send this host\'s traffic to it' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from create" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from create" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from create" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from delete" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from delete" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from list" -l zone -d 'Only the hosts of this zone' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format' -r -f -a "table\t'A table for people'
json\t'A JSON array, the objects as in the state file, for scripts'"
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from list" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from list" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a host: one /24 of its zone (10.<zone>.<number>.0/24) whose containers get .1-.254. Give --number or --subnet; with neither the lowest free number of the zone is used. Re-creating an identical host does nothing'
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete a host (it must have no containers left)'
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from help" -f -a "list" -d 'List hosts'
complete -c netfabric -n "__fish_netfabric_using_subcommand host; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and not __fish_seen_subcommand_from create delete list help" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and not __fish_seen_subcommand_from create delete list help" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and not __fish_seen_subcommand_from create delete list help" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and not __fish_seen_subcommand_from create delete list help" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and not __fish_seen_subcommand_from create delete list help" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and not __fish_seen_subcommand_from create delete list help" -f -a "create" -d 'Create an owner (a user). It gets a numeric id that is never reused. The owner `system` (id 1) always exists: its containers (load balancers, monitoring) may talk to every container. Re-creating an existing owner does nothing'
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and not __fish_seen_subcommand_from create delete list help" -f -a "delete" -d 'Delete an owner (it must own no container and be in no group)'
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and not __fish_seen_subcommand_from create delete list help" -f -a "list" -d 'List owners'
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and not __fish_seen_subcommand_from create delete list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and __fish_seen_subcommand_from create" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and __fish_seen_subcommand_from create" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and __fish_seen_subcommand_from create" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and __fish_seen_subcommand_from delete" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and __fish_seen_subcommand_from delete" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format' -r -f -a "table\t'A table for people'
json\t'A JSON array, the objects as in the state file, for scripts'"
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and __fish_seen_subcommand_from list" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and __fish_seen_subcommand_from list" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create an owner (a user). It gets a numeric id that is never reused. The owner `system` (id 1) always exists: its containers (load balancers, monitoring) may talk to every container. Re-creating an existing owner does nothing'
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete an owner (it must own no container and be in no group)'
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and __fish_seen_subcommand_from help" -f -a "list" -d 'List owners'
complete -c netfabric -n "__fish_netfabric_using_subcommand owner; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and not __fish_seen_subcommand_from create delete add-member remove-member list help" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and not __fish_seen_subcommand_from create delete add-member remove-member list help" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and not __fish_seen_subcommand_from create delete add-member remove-member list help" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and not __fish_seen_subcommand_from create delete add-member remove-member list help" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and not __fish_seen_subcommand_from create delete add-member remove-member list help" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and not __fish_seen_subcommand_from create delete add-member remove-member list help" -f -a "create" -d 'Create a group of owners. Containers whose owners share a group may talk to each other (both directions, every port). Re-creating an identical group does nothing'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and not __fish_seen_subcommand_from create delete add-member remove-member list help" -f -a "delete" -d 'Delete a group (its members lose the access it granted at once)'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and not __fish_seen_subcommand_from create delete add-member remove-member list help" -f -a "add-member" -d 'Add owners to a group (already a member: nothing changes)'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and not __fish_seen_subcommand_from create delete add-member remove-member list help" -f -a "remove-member" -d 'Remove owners from a group (not a member: nothing changes). Takes effect for the very next packet, open connections included'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and not __fish_seen_subcommand_from create delete add-member remove-member list help" -f -a "list" -d 'List groups and their members'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and not __fish_seen_subcommand_from create delete add-member remove-member list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from create" -l member -d 'An owner to put in the group (repeat for more)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from create" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from create" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from create" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from delete" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from delete" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from add-member" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from add-member" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from add-member" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from add-member" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from add-member" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from remove-member" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from remove-member" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from remove-member" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from remove-member" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from remove-member" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format' -r -f -a "table\t'A table for people'
json\t'A JSON array, the objects as in the state file, for scripts'"
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from list" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from list" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a group of owners. Containers whose owners share a group may talk to each other (both directions, every port). Re-creating an identical group does nothing'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete a group (its members lose the access it granted at once)'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "add-member" -d 'Add owners to a group (already a member: nothing changes)'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "remove-member" -d 'Remove owners from a group (not a member: nothing changes). Takes effect for the very next packet, open connections included'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "list" -d 'List groups and their members'
complete -c netfabric -n "__fish_netfabric_using_subcommand group; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and not __fish_seen_subcommand_from create delete attach detach list help" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and not __fish_seen_subcommand_from create delete attach detach list help" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and not __fish_seen_subcommand_from create delete attach detach list help" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and not __fish_seen_subcommand_from create delete attach detach list help" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and not __fish_seen_subcommand_from create delete attach detach list help" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and not __fish_seen_subcommand_from create delete attach detach list help" -f -a "create" -d 'Create a container and print its address. The address is the lowest free one of .1-.254 of the host\'s /24 and stays the container\'s until it is deleted (restarts and re-attaches keep it). Creating the same container again prints the same address and changes nothing'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and not __fish_seen_subcommand_from create delete attach detach list help" -f -a "delete" -d 'Delete a container; its address becomes free'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and not __fish_seen_subcommand_from create delete attach detach list help" -f -a "attach" -d 'Attach the container\'s network namespace: veth nfc<octet>/eth0, its persistent address and MAC, the link-local gateway and routes. The host\'s agent attaches the TC programs and brings the port up'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and not __fish_seen_subcommand_from create delete attach detach list help" -f -a "detach" -d 'Remove the container\'s port (both ends of the veth)'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and not __fish_seen_subcommand_from create delete attach detach list help" -f -a "list" -d 'List containers'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and not __fish_seen_subcommand_from create delete attach detach list help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from create" -l owner -d 'The owner of the container' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from create" -l host -d 'The host it runs on' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from create" -l address -d 'Ask for this address instead of the lowest free one (e.g. when restoring); it must be a free .1-.254 of the host\'s /24' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from create" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from create" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from create" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from create" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from delete" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from delete" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from delete" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from delete" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from attach" -l netns -d 'The container\'s network namespace, e.g. /run/netns/web' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from attach" -l host-netns -d 'The host\'s network namespace (default: the current one), e.g. /run/netns/nf-h1 in the lab' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from attach" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from attach" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from attach" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from attach" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from attach" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from detach" -l host-netns -d 'The host\'s network namespace (default: the current one)' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from detach" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from detach" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from detach" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from detach" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from detach" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from list" -l host -d 'Only the containers on this host' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from list" -l owner -d 'Only the containers of this owner' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from list" -s o -l output -d 'Output format' -r -f -a "table\t'A table for people'
json\t'A JSON array, the objects as in the state file, for scripts'"
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from list" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from list" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a container and print its address. The address is the lowest free one of .1-.254 of the host\'s /24 and stays the container\'s until it is deleted (restarts and re-attaches keep it). Creating the same container again prints the same address and changes nothing'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete a container; its address becomes free'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from help" -f -a "attach" -d 'Attach the container\'s network namespace: veth nfc<octet>/eth0, its persistent address and MAC, the link-local gateway and routes. The host\'s agent attaches the TC programs and brings the port up'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from help" -f -a "detach" -d 'Remove the container\'s port (both ends of the veth)'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from help" -f -a "list" -d 'List containers'
complete -c netfabric -n "__fish_netfabric_using_subcommand container; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netfabric -n "__fish_netfabric_using_subcommand agent" -l host -d 'This host\'s name in the desired state' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand agent" -l netns -d 'Join this network namespace first (a lab host: /run/netns/nf-h1)' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand agent" -l bpffs -d 'The bpffs mount; maps and links go under <bpffs>/netfabric/<host>/' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand agent" -l metrics-addr -d 'Where Prometheus `/metrics` is served (bound before joining --netns, so a lab agent serves on this machine\'s loopback); an empty value serves nothing' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand agent" -l rescan-ms -d 'How often container ports are rescanned, in milliseconds' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand agent" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand agent" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand agent" -l detach-on-exit -d 'On exit, detach the programs and remove every pin of this host'
complete -c netfabric -n "__fish_netfabric_using_subcommand agent" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand agent" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand agent" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and not __fish_seen_subcommand_from up down status run help" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and not __fish_seen_subcommand_from up down status run help" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and not __fish_seen_subcommand_from up down status run help" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and not __fish_seen_subcommand_from up down status run help" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and not __fish_seen_subcommand_from up down status run help" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and not __fish_seen_subcommand_from up down status run help" -f -a "up" -d 'Build the lab and start its agents (in the background). With `--store etcd` the lab\'s store is a local three-member etcd cluster'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and not __fish_seen_subcommand_from up down status run help" -f -a "down" -d 'Remove everything the lab made (namespaces, pins, agents, state)'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and not __fish_seen_subcommand_from up down status run help" -f -a "status" -d 'Hosts, agents (alive?) and containers of the lab'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and not __fish_seen_subcommand_from up down status run help" -f -a "run" -d 'Up, print what to try, wait for Ctrl-C, down'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and not __fish_seen_subcommand_from up down status run help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from up" -l name -d 'Lab name: `lab` gives hosts h1..hN; another name prefixes them' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from up" -l dir -d 'Directory of the lab\'s store, manifest and logs (default /var/lib/netfabric/<name>)' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from up" -l bpffs -d 'The bpffs mount' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from up" -l hosts -d 'Number of hosts (1..=9)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from up" -l metrics-port-base -d 'The agent of host N serves /metrics on 127.0.0.1:<base + N>; 0 serves none' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from up" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from up" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from up" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from up" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from up" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from down" -l name -d 'Lab name: `lab` gives hosts h1..hN; another name prefixes them' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from down" -l dir -d 'Directory of the lab\'s store, manifest and logs (default /var/lib/netfabric/<name>)' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from down" -l bpffs -d 'The bpffs mount' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from down" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from down" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from down" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from down" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from down" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from status" -l name -d 'Lab name: `lab` gives hosts h1..hN; another name prefixes them' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from status" -l dir -d 'Directory of the lab\'s store, manifest and logs (default /var/lib/netfabric/<name>)' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from status" -l bpffs -d 'The bpffs mount' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from status" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from status" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from status" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from status" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from run" -l name -d 'Lab name: `lab` gives hosts h1..hN; another name prefixes them' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from run" -l dir -d 'Directory of the lab\'s store, manifest and logs (default /var/lib/netfabric/<name>)' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from run" -l bpffs -d 'The bpffs mount' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from run" -l hosts -d 'Number of hosts (1..=9)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from run" -l metrics-port-base -d 'The agent of host N serves /metrics on 127.0.0.1:<base + N>; 0 serves none' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from run" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from run" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from run" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from run" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from run" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from help" -f -a "up" -d 'Build the lab and start its agents (in the background). With `--store etcd` the lab\'s store is a local three-member etcd cluster'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from help" -f -a "down" -d 'Remove everything the lab made (namespaces, pins, agents, state)'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from help" -f -a "status" -d 'Hosts, agents (alive?) and containers of the lab'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from help" -f -a "run" -d 'Up, print what to try, wait for Ctrl-C, down'
complete -c netfabric -n "__fish_netfabric_using_subcommand lab; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and not __fish_seen_subcommand_from list dump help" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and not __fish_seen_subcommand_from list dump help" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and not __fish_seen_subcommand_from list dump help" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and not __fish_seen_subcommand_from list dump help" -s h -l help -d 'Print help'
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and not __fish_seen_subcommand_from list dump help" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and not __fish_seen_subcommand_from list dump help" -f -a "list" -d 'Every pinned map of a host: type, key/value size, entries used and capacity'
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and not __fish_seen_subcommand_from list dump help" -f -a "dump" -d 'The entries of one pinned map, decoded into names and addresses (owners, containers, hosts, groups, MACs, counter reasons)'
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and not __fish_seen_subcommand_from list dump help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and __fish_seen_subcommand_from list" -l host -d 'The host (its pin directory under <bpffs>/netfabric/); may be left out when exactly one host is pinned' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and __fish_seen_subcommand_from list" -l bpffs -d 'The bpffs mount' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and __fish_seen_subcommand_from list" -s o -l output -r -f -a "table\t'A table for people'
json\t'A JSON array, the objects as in the state file, for scripts'"
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and __fish_seen_subcommand_from list" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and __fish_seen_subcommand_from list" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and __fish_seen_subcommand_from list" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and __fish_seen_subcommand_from dump" -l host -d 'The host (its pin directory under <bpffs>/netfabric/); may be left out when exactly one host is pinned' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and __fish_seen_subcommand_from dump" -l bpffs -d 'The bpffs mount' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and __fish_seen_subcommand_from dump" -s o -l output -r -f -a "table\t'A table for people'
json\t'A JSON array, the objects as in the state file, for scripts'"
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and __fish_seen_subcommand_from dump" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and __fish_seen_subcommand_from dump" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and __fish_seen_subcommand_from dump" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and __fish_seen_subcommand_from dump" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and __fish_seen_subcommand_from dump" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and __fish_seen_subcommand_from help" -f -a "list" -d 'Every pinned map of a host: type, key/value size, entries used and capacity'
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and __fish_seen_subcommand_from help" -f -a "dump" -d 'The entries of one pinned map, decoded into names and addresses (owners, containers, hosts, groups, MACs, counter reasons)'
complete -c netfabric -n "__fish_netfabric_using_subcommand maps; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netfabric -n "__fish_netfabric_using_subcommand monitor" -l host -d 'The host (its pin directory under <bpffs>/netfabric/); may be left out when exactly one host is pinned' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand monitor" -l bpffs -d 'The bpffs mount' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand monitor" -l reason -d 'Only drops with this reason (policy_denied, spoofed_source_ip, ...)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand monitor" -l owner -d 'Only drops whose source or destination belongs to this owner' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand monitor" -l container -d 'Only drops whose source or destination is this container' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand monitor" -s o -l output -d '`table`: one line per drop; `json`: one JSON object per line' -r -f -a "table\t'A table for people'
json\t'A JSON array, the objects as in the state file, for scripts'"
complete -c netfabric -n "__fish_netfabric_using_subcommand monitor" -l count -d 'Stop after this many drops were shown' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand monitor" -l duration -d 'Stop after this many seconds' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand monitor" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand monitor" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand monitor" -l backlog -d 'Also show the drops queued before the monitor started (events an earlier monitor left unread; none are produced while no monitor runs)'
complete -c netfabric -n "__fish_netfabric_using_subcommand monitor" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand monitor" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netfabric -n "__fish_netfabric_using_subcommand monitor" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand status" -l host -d 'The host (its pin directory under <bpffs>/netfabric/); may be left out when exactly one host is pinned' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand status" -l bpffs -d 'The bpffs mount' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand status" -s o -l output -r -f -a "table\t'A table for people'
json\t'A JSON array, the objects as in the state file, for scripts'"
complete -c netfabric -n "__fish_netfabric_using_subcommand status" -l store -d 'Where the desired state is stored: file:///path/state.json (the embedded store; default file:///var/lib/netfabric/state.json) or the cluster store etcd://[user:pass@]host:port[,host:port...][/prefix] (etcds:// or ?ca=..&cert=..&key=.. for TLS)' -r
complete -c netfabric -n "__fish_netfabric_using_subcommand status" -l state-dir -d 'Use the embedded store in DIR (DIR/state.json); shorthand for --store file:///DIR/state.json' -r -F
complete -c netfabric -n "__fish_netfabric_using_subcommand status" -s v -l verbose -d 'More logs on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides'
complete -c netfabric -n "__fish_netfabric_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c netfabric -n "__fish_netfabric_using_subcommand status" -s V -l version -d 'Print version'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and not __fish_seen_subcommand_from zone host owner group container agent lab maps monitor status help" -f -a "zone" -d 'Zones: one /16 each (create, delete, list)'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and not __fish_seen_subcommand_from zone host owner group container agent lab maps monitor status help" -f -a "host" -d 'Hosts: one /24 of a zone each, with the uplink and its underlay address (create, delete, list)'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and not __fish_seen_subcommand_from zone host owner group container agent lab maps monitor status help" -f -a "owner" -d 'Owners: the users whose containers may always talk to each other (create, delete, list)'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and not __fish_seen_subcommand_from zone host owner group container agent lab maps monitor status help" -f -a "group" -d 'Groups: sets of owners whose containers may talk to each other (create, delete, add-member, remove-member, list)'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and not __fish_seen_subcommand_from zone host owner group container agent lab maps monitor status help" -f -a "container" -d 'Containers: each gets a persistent address on its host (create, delete, list)'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and not __fish_seen_subcommand_from zone host owner group container agent lab maps monitor status help" -f -a "agent" -d 'The agent of one host: loads, attaches and pins the datapath and keeps its maps equal to the desired state'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and not __fish_seen_subcommand_from zone host owner group container agent lab maps monitor status help" -f -a "lab" -d 'The lab: a zone of hosts, containers and agents built from network namespaces on this machine (up, down, status, run)'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and not __fish_seen_subcommand_from zone host owner group container agent lab maps monitor status help" -f -a "maps" -d 'The pinned BPF maps of a host, read from bpffs (no agent needed): list them, or dump one decoded into names and addresses'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and not __fish_seen_subcommand_from zone host owner group container agent lab maps monitor status help" -f -a "monitor" -d 'Live drops of a host from its ring buffer: time, direction, source, destination, reason; filters and JSON lines'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and not __fish_seen_subcommand_from zone host owner group container agent lab maps monitor status help" -f -a "status" -d 'One screen per host: agent, programs attached, map pressure, counters by reason, store reachability'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and not __fish_seen_subcommand_from zone host owner group container agent lab maps monitor status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from zone" -f -a "create" -d 'Create a zone: one /16 such as 10.1.0.0/16. Hosts of the zone are its /24s. Re-creating an identical zone does nothing'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from zone" -f -a "delete" -d 'Delete a zone (it must have no hosts left)'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from zone" -f -a "list" -d 'List zones'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from host" -f -a "create" -d 'Create a host: one /24 of its zone (10.<zone>.<number>.0/24) whose containers get .1-.254. Give --number or --subnet; with neither the lowest free number of the zone is used. Re-creating an identical host does nothing'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from host" -f -a "delete" -d 'Delete a host (it must have no containers left)'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from host" -f -a "list" -d 'List hosts'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from owner" -f -a "create" -d 'Create an owner (a user). It gets a numeric id that is never reused. The owner `system` (id 1) always exists: its containers (load balancers, monitoring) may talk to every container. Re-creating an existing owner does nothing'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from owner" -f -a "delete" -d 'Delete an owner (it must own no container and be in no group)'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from owner" -f -a "list" -d 'List owners'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from group" -f -a "create" -d 'Create a group of owners. Containers whose owners share a group may talk to each other (both directions, every port). Re-creating an identical group does nothing'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from group" -f -a "delete" -d 'Delete a group (its members lose the access it granted at once)'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from group" -f -a "add-member" -d 'Add owners to a group (already a member: nothing changes)'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from group" -f -a "remove-member" -d 'Remove owners from a group (not a member: nothing changes). Takes effect for the very next packet, open connections included'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from group" -f -a "list" -d 'List groups and their members'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from container" -f -a "create" -d 'Create a container and print its address. The address is the lowest free one of .1-.254 of the host\'s /24 and stays the container\'s until it is deleted (restarts and re-attaches keep it). Creating the same container again prints the same address and changes nothing'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from container" -f -a "delete" -d 'Delete a container; its address becomes free'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from container" -f -a "attach" -d 'Attach the container\'s network namespace: veth nfc<octet>/eth0, its persistent address and MAC, the link-local gateway and routes. The host\'s agent attaches the TC programs and brings the port up'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from container" -f -a "detach" -d 'Remove the container\'s port (both ends of the veth)'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from container" -f -a "list" -d 'List containers'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from lab" -f -a "up" -d 'Build the lab and start its agents (in the background). With `--store etcd` the lab\'s store is a local three-member etcd cluster'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from lab" -f -a "down" -d 'Remove everything the lab made (namespaces, pins, agents, state)'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from lab" -f -a "status" -d 'Hosts, agents (alive?) and containers of the lab'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from lab" -f -a "run" -d 'Up, print what to try, wait for Ctrl-C, down'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from maps" -f -a "list" -d 'Every pinned map of a host: type, key/value size, entries used and capacity'
complete -c netfabric -n "__fish_netfabric_using_subcommand help; and __fish_seen_subcommand_from maps" -f -a "dump" -d 'The entries of one pinned map, decoded into names and addresses (owners, containers, hosts, groups, MACs, counter reasons)'
