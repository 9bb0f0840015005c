"""The libvirt driver: a master and worker VMs installed with Ansible."""
