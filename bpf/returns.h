/* Return codes that mean the same on a netkit hook and on a tcx hook.
 *
 * netkit (include/uapi/linux/if_link.h)   tcx / tc (include/uapi/linux/pkt_cls.h)
 *   NETKIT_NEXT = -1  next program         TC_ACT_UNSPEC = -1  next program
 *   NETKIT_PASS =  0  pass, stop here      TC_ACT_OK     =  0  pass, stop here
 *   NETKIT_DROP =  2  drop                 TC_ACT_SHOT   =  2  drop
 *
 * The numbers line up, so one object file serves both kinds of hook. Only these three are used:
 * netkit drops a packet on any other value (NETKIT_REDIRECT = 7 aside), while tcx treats unknown
 * values as "next" -- a program returning, say, TC_ACT_PIPE (3) would pass on veth and silently
 * drop on netkit. After the last program of a hook, "next" means pass on both (on netkit even
 * when the device policy is blackhole: the policy applies only when no program is attached).
 *
 * bookworm's headers predate netkit, hence our own names. */
#ifndef NKPLAN_RETURNS_H
#define NKPLAN_RETURNS_H

#define NK_NEXT (-1) /* NETKIT_NEXT == TC_ACT_UNSPEC */
#define NK_PASS 0    /* NETKIT_PASS == TC_ACT_OK */
#define NK_DROP 2    /* NETKIT_DROP == TC_ACT_SHOT */

#endif
